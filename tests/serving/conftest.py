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
