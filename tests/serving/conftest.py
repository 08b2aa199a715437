"""Fixtures for the serving tests: an isolated BentoML home, a tiny real Keras model trained
for a few steps on the shipped sample, and that model packaged into the model store."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

# BentoML resolves its home on first use: point it at a throwaway folder before any test
# touches the model store (child processes, e.g. `bentoml build`, inherit it).
_HOME = Path(tempfile.mkdtemp(prefix="braintumor-bentoml-"))
os.environ["BENTOML_HOME"] = str(_HOME)
os.environ["BENTOML_DO_NOT_TRACK"] = "true"

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


def tiny_spec():
    from braintumor.preprocessing import PreprocessSpec

    return PreprocessSpec(image_size=TINY_SIZE, channels=1)


def build_tiny_model(n_classes: int = 4):
    """A few conv layers on 64x64x1 with a softmax head: small, real, serialisable."""
    import keras

    keras.utils.set_random_seed(7)
    inputs = keras.Input((TINY_SIZE, TINY_SIZE, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(16, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(16, 3, activation="relu", name="last_conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="tiny_cnn")


@pytest.fixture(scope="session")
def bentoml_home() -> Path:
    from bentoml._internal.configuration.containers import BentoMLContainer

    home = Path(BentoMLContainer.bentoml_home.get())
    assert home == _HOME, f"BentoML home {home} is not the test's isolated {_HOME}"
    return home


@pytest.fixture(scope="session")
def sample_arrays(sample_dir: Path) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    from braintumor.constants import CLASS_NAMES
    from braintumor.preprocessing import load_and_preprocess

    spec = tiny_spec()
    items = sample_images(sample_dir)
    x = np.stack([load_and_preprocess(path, spec) for path, _ in items])
    y = np.array([CLASS_NAMES.index(label) for _, label in items])
    return x, y, [path for path, _ in items]


@pytest.fixture(scope="session")
def tiny_model(sample_arrays):
    import keras

    x, y, _ = sample_arrays
    model = build_tiny_model()
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=8, batch_size=8, verbose=0, shuffle=True)
    return model


@pytest.fixture(scope="session")
def tiny_card():
    from braintumor.serving.metadata import ModelCard

    return ModelCard(
        preprocessing=tiny_spec().to_dict(),
        backbone="tiny_cnn",
        model_version="7",
        stage="production",
        metrics={"weighted_f1": 0.5, "accuracy": 0.5},
        protocol="resplit",
        data_hash="0123456789abcdef",
        git_commit="deadbeef",
    )


def export_onnx(model, path: Path) -> Path:
    """ONNX export of a Keras model (Keras' own exporter, tf2onnx underneath)."""
    model.export(str(path), format="onnx", verbose=False)
    return path


@pytest.fixture(scope="session")
def tiny_onnx(tiny_model, tmp_path_factory) -> Path:
    return export_onnx(tiny_model, tmp_path_factory.mktemp("onnx") / "model.onnx")


@pytest.fixture(scope="session")
def packaged(bentoml_home, tiny_model, tiny_card, tiny_onnx) -> Packaged:
    """The tiny model in the model store with its ONNX export (what the service serves)."""
    import bentoml

    from braintumor.serving.store import save_to_bentoml

    tag = save_to_bentoml(tiny_model, tiny_card, onnx_path=tiny_onnx)
    return Packaged(tag, Path(bentoml.models.get(tag).path), tiny_model, tiny_card)


@pytest.fixture(scope="session")
def packaged_keras_only(bentoml_home, tiny_model, tiny_card, tmp_path_factory) -> Packaged:
    """The same model without ONNX, saved from a .keras file (the Keras backend path)."""
    import bentoml

    from braintumor.serving.store import save_to_bentoml

    path = tmp_path_factory.mktemp("keras") / "model.keras"
    tiny_model.save(path)
    tag = save_to_bentoml(path, tiny_card)
    return Packaged(tag, Path(bentoml.models.get(tag).path), tiny_model, tiny_card)
