"""Helpers shared by the serving tests (imported as `tests.serving.helpers`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

TINY_SIZE = 64


@dataclass(frozen=True)
class Packaged:
    """A model packaged for serving, with what the tests compare against."""

    tag: str
    model_dir: Path
    keras_model: object
    card: object


def sample_images(sample_dir: Path) -> list[tuple[Path, str]]:
    """(path, canonical class) of the real sample images, planted bad files left out."""
    from braintumor.constants import CLASS_ALIASES

    found = []
    for path in sorted(sample_dir.glob("*/*/*")):
        if path.name.startswith("planted_") or path.suffix.lower() not in {".jpg", ".png"}:
            continue
        found.append((path, CLASS_ALIASES[path.parent.name.lower()]))
    return found


def load_card(model_tag: str):
    """The card a model-store entry carries."""
    import bentoml

    from braintumor.serving.metadata import ModelCard

    return ModelCard.from_metadata(bentoml.models.get(model_tag).info.metadata)


def tiny_spec():
    from braintumor.preprocessing import PreprocessSpec

    return PreprocessSpec(image_size=TINY_SIZE, channels=1)


def build_tiny_model(n_classes: int = 4):
    """The real from-scratch backbone (`custom_cnn`), narrow and on 64x64x1: small and fast,
    with the custom normalisation layer serving must be able to load."""
    import keras

    from braintumor.models.backbones import CnnSpec, build_classifier

    keras.utils.set_random_seed(7)
    return build_classifier(
        "custom_cnn",
        input_shape=(TINY_SIZE, TINY_SIZE, 1),
        num_classes=n_classes,
        cnn=CnnSpec(filters=(8, 16, 32)),
    )


def export_onnx(model, path: Path, temperature: float = 1.0) -> Path:
    """The ONNX serving graph, with the training code's exporter."""
    from braintumor.models.export import to_serving_onnx

    return to_serving_onnx(model, path, temperature=temperature)


def load_service(env: dict[str, str]):
    """Import `service.py` afresh with `env` applied (its configuration is read on import).

    Returns the module; `module.BrainTumorClassifier.to_asgi()` is the in-process app.
    """
    import importlib
    import os
    import sys

    for key in [k for k in os.environ if k.startswith("BRAINTUMOR_")]:
        del os.environ[key]
    os.environ.update(env)
    sys.modules.pop("service", None)
    return importlib.import_module("service")


def sample_guard(model, x, y, paths, class_names):
    """`model`'s guard fitted as the pipeline does: the detector on the sample's Training
    images, thresholds and conformal sets on its Testing images."""
    import numpy as np

    from braintumor.guard.fit import fit_guard, input_check_failures
    from braintumor.models.export import serving_outputs

    train = np.array(["Training" in str(path) for path in paths])
    out = serving_outputs(model, x)
    return fit_guard(
        out["embedding"][train],
        y[train],
        out["embedding"][~train],
        out["probabilities"][~train],
        y[~train],
        input_check_failures([p for p, t in zip(paths, train, strict=True) if not t]),
        class_names,
        review_threshold=0.6,
    )
