"""Fixtures for the serving tests: an isolated BentoML home, a tiny real Keras model trained
for a few steps on the shipped sample, and that model packaged into the model store."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

# BentoML resolves its home on first use: point it at a throwaway folder before any test
# touches the model store (child processes, e.g. `bentoml build`, inherit it).
_HOME = Path(tempfile.mkdtemp(prefix="braintumor-bentoml-"))
atexit.register(shutil.rmtree, _HOME, True)  # also when no test ran (--collect-only, -k)
os.environ["BENTOML_HOME"] = str(_HOME)
os.environ["BENTOML_DO_NOT_TRACK"] = "true"

from tests.serving.helpers import (  # noqa: E402
    Packaged,
    build_tiny_model,
    export_onnx,
    sample_images,
    tiny_spec,
)


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


@pytest.fixture(scope="session")
def tiny_onnx(tiny_model, tmp_path_factory) -> Path:
    return export_onnx(tiny_model, tmp_path_factory.mktemp("onnx") / "model.onnx")


@pytest.fixture(scope="session")
def service_guard(tiny_guard, tiny_model, sample_arrays):
    """The tiny model's guard with thresholds set from the shipped sample: its OOD threshold
    1.25 times the highest sample score, and conformal thresholds that keep each sample's top
    class in its set (the fitted ones come from 9 calibration images: every class is always
    in every set; 1e-4 of slack for ONNX vs Keras float differences). Tests then check the
    out-of-distribution reason fires on an input made
    for it and on no sample image."""
    from braintumor.models.export import serving_outputs

    card, detector = tiny_guard
    x, _, _ = sample_arrays
    out = serving_outputs(tiny_model, x)
    probs, top = out["probabilities"], out["probabilities"].argmax(axis=1)
    thresholds = tuple(
        float((1.0 - probs[top == c, c]).max()) + 1e-4 if (top == c).any() else 0.5
        for c in range(4)
    )
    ood = 1.25 * float(detector.score(out["embedding"]).max())
    card = card.model_copy(update={"conformal_thresholds": thresholds, "ood_threshold": ood})
    return card, detector


@pytest.fixture(scope="session")
def packaged(bentoml_home, tiny_model, tiny_card, tiny_onnx, service_guard) -> Packaged:
    """The tiny model in the model store with its serving graph and guard (what the service
    serves)."""
    import bentoml

    from braintumor.serving.store import save_to_bentoml

    card = tiny_card.model_copy(update={"guard": service_guard[0]})
    tag = save_to_bentoml(tiny_model, card, onnx_path=tiny_onnx, detector=service_guard[1])
    return Packaged(tag, Path(bentoml.models.get(tag).path), tiny_model, card)


@pytest.fixture(scope="session")
def packaged_unguarded(bentoml_home, tiny_model, tiny_card, tiny_onnx) -> Packaged:
    """The same model packaged without a guard (as `save_to_bentoml` allows)."""
    import bentoml

    from braintumor.serving.store import save_to_bentoml

    tag = save_to_bentoml(tiny_model, tiny_card, onnx_path=tiny_onnx)
    return Packaged(tag, Path(bentoml.models.get(tag).path), tiny_model, tiny_card)


@pytest.fixture(scope="session")
def tiny_guard(tiny_model, sample_arrays):
    """The tiny model's guard, fitted as the pipeline does: the detector on the sample's
    Training images, thresholds and conformal sets on its Testing images."""
    from braintumor.constants import CLASS_NAMES
    from tests.serving.helpers import sample_guard

    x, y, paths = sample_arrays
    return sample_guard(tiny_model, x, y, paths, CLASS_NAMES)


REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def built_bento(packaged) -> str:
    """`bentoml build` of this repository's bentofile.yaml for the packaged tiny model."""
    from braintumor.serving.store import build_bento

    return build_bento(packaged.tag, project_dir=REPO_ROOT, labels={"purpose": "test"})


@pytest.fixture(scope="session")
def served_bento(built_bento, tiny_model, tiny_card, tmp_path_factory):
    """`bentoml serve <bento tag>` on a loopback port, one worker; yields the base URL.

    A decoy version is saved after the build, so "latest" in the model store is another
    model: the Bento must still serve the one it was built with.
    """
    from braintumor.serving.local import start_bento, stop_bento
    from braintumor.serving.store import save_to_bentoml

    save_to_bentoml(tiny_model, tiny_card.model_copy(update={"model_version": "decoy"}))

    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRAINTUMOR_")}
    env.update({"BRAINTUMOR_WORKERS": "1", "BRAINTUMOR_MAX_UPLOAD_BYTES": "300000"})
    server = start_bento(built_bento, env=env, log=log)
    try:
        yield server.url
    finally:
        stop_bento(server)
