"""Writing models into the BentoML model store (isolated home) with their card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from braintumor.serving.predictor import (
    CARD_FILE,
    INT8_FILE,
    MODEL_FILE,
    ONNX_FILE,
    Predictor,
)
from braintumor.serving.store import (
    PackagingError,
    find_project_dir,
    package_model,
    save_to_bentoml,
)
from tests.serving.helpers import load_card


def test_saved_model_holds_model_onnx_card_and_labels(packaged):
    import bentoml

    stored = bentoml.models.get(packaged.tag)
    assert packaged.tag.startswith("brain-tumor-classifier:")
    assert {p.name for p in packaged.model_dir.iterdir()} >= {MODEL_FILE, ONNX_FILE, CARD_FILE}
    assert stored.info.labels == {
        "stage": "production",
        "backbone": "tiny_cnn",
        "model_version": "7",
        "runtime": "onnx",
    }
    assert load_card(packaged.tag) == packaged.card
    assert json.loads((packaged.model_dir / CARD_FILE).read_text()) == packaged.card.to_metadata()
    assert stored.info.metadata["preprocessing"]["image_size"] == 64


def test_a_model_saved_without_its_serving_graph_cannot_be_served(
    bentoml_home, tiny_model, tiny_card, tmp_path
):
    import bentoml

    from braintumor.serving.predictor import ModelLoadError

    path = tmp_path / "m.keras"
    tiny_model.save(path)
    tag = save_to_bentoml(path, tiny_card)
    folder = Path(bentoml.models.get(tag).path)
    assert (folder / MODEL_FILE).is_file() and not (folder / ONNX_FILE).exists()
    with pytest.raises(ModelLoadError, match="no ONNX serving graph"):
        Predictor(folder)


def test_each_save_is_a_new_version(bentoml_home, tiny_model, tiny_card, tmp_path):
    path = tmp_path / "m.keras"
    tiny_model.save(path)
    first, _ = package_model(path, tiny_card, build=False)
    second = save_to_bentoml(path, tiny_card, labels={"team": "neuro"})
    assert first != second
    import bentoml

    assert bentoml.models.get(second).info.labels["team"] == "neuro"


@pytest.mark.parametrize("bad", ["missing.keras", "model.h5"])
def test_refuses_a_path_that_is_not_a_keras_file(bentoml_home, tiny_card, tmp_path, bad):
    if bad.endswith(".h5"):
        (tmp_path / bad).write_bytes(b"not keras")
    with pytest.raises(PackagingError, match=r"is not a \.keras file"):
        save_to_bentoml(tmp_path / bad, tiny_card)


def test_refuses_a_missing_onnx_file(bentoml_home, tiny_model, tiny_card, tmp_path):
    with pytest.raises(PackagingError, match="ONNX file"):
        save_to_bentoml(tiny_model, tiny_card, onnx_path=tmp_path / "nope.onnx")


def test_project_dir_is_found_from_a_subfolder(tmp_path):
    (tmp_path / "bentofile.yaml").write_text("service: service:X\n")
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert find_project_dir(tmp_path / "a" / "b") == tmp_path
    repo = Path(__file__).resolve().parents[2]
    assert find_project_dir(repo / "tests") == repo


def test_package_model_exports_onnx_and_records_the_checks(
    bentoml_home, tiny_model, tiny_card, sample_arrays
):
    import bentoml

    x, y, _ = sample_arrays
    tag, bento = package_model(tiny_model, tiny_card, parity_inputs=x, parity_labels=y, build=False)
    assert bento is None
    folder = Path(bentoml.models.get(tag).path)
    assert (folder / ONNX_FILE).is_file()
    checks = load_card(tag).runtime_checks
    assert checks["onnx"]["agreement"] == 1.0 and checks["onnx"]["max_abs_diff"] < 1e-4
    assert checks["onnx"]["images"] == len(x) and "weighted_f1_drop" in checks["onnx"]
    # The int8 model ships exactly when its check passed, and is then served first.
    accepted = checks["onnx-int8"]["accepted"]
    assert (folder / INT8_FILE).is_file() == accepted
    expected = "onnx-int8" if accepted else "onnx"
    assert bentoml.models.get(tag).info.labels["runtime"] == expected
    assert Predictor(folder).backend == expected


@pytest.mark.parametrize("accept", [True, False])
def test_int8_model_ships_only_when_accepted(
    bentoml_home, tiny_model, tiny_card, sample_arrays, monkeypatch, accept
):
    import bentoml

    from braintumor.serving import store

    monkeypatch.setattr(store, "accept_runtime", lambda check: accept)
    x, y, _ = sample_arrays
    tag, _ = package_model(tiny_model, tiny_card, parity_inputs=x, parity_labels=y, build=False)
    folder = Path(bentoml.models.get(tag).path)
    assert (folder / INT8_FILE).is_file() is accept
    assert load_card(tag).runtime_checks["onnx-int8"]["accepted"] is accept
    assert Predictor(folder).backend == ("onnx-int8" if accept else "onnx")


def test_no_int8_model_without_real_images(bentoml_home, tiny_model, tiny_card):
    import bentoml

    tag, _ = package_model(tiny_model, tiny_card, build=False)
    folder = Path(bentoml.models.get(tag).path)
    assert (folder / ONNX_FILE).is_file() and not (folder / INT8_FILE).exists()
    assert load_card(tag).runtime_checks == {}


def test_failed_onnx_export_fails_packaging(bentoml_home, tiny_model, tiny_card, monkeypatch):
    from braintumor.models import export

    def broken(model, path, **_):
        raise export.ExportError("tf2onnx cannot convert this model")

    monkeypatch.setattr(export, "to_onnx", broken)
    with pytest.raises(PackagingError, match=r"cannot export the ONNX serving graph.*convert"):
        package_model(tiny_model, tiny_card, build=False)


def test_onnx_that_disagrees_with_keras_fails_packaging(
    bentoml_home, tiny_model, tiny_card, monkeypatch
):
    from braintumor.models import export
    from tests.serving.helpers import build_tiny_model

    other = build_tiny_model()  # different random weights: different outputs
    real = export.serving_model
    monkeypatch.setattr(export, "serving_model", lambda model, t=1.0: real(other, t))
    with pytest.raises(PackagingError, match="differ by"):
        package_model(tiny_model, tiny_card, build=False)


def test_the_guard_round_trips_through_the_model_store(
    bentoml_home, tiny_model, tiny_card, tiny_guard, sample_arrays
):
    """The detector and the thresholds stored with a model version come back unchanged, and
    the loaded guard scores embeddings exactly as the fitted one."""
    import bentoml

    from braintumor.serving.guard import Guard
    from braintumor.serving.predictor import OOD_FILE

    x, y, _ = sample_arrays
    card, detector = tiny_guard
    tag, _ = package_model(
        tiny_model, tiny_card, quantize=False, parity_inputs=x, parity_labels=y,
        build=False, guard=tiny_guard,
    )  # fmt: skip
    folder = Path(bentoml.models.get(tag).path)
    assert (folder / OOD_FILE).is_file()
    stored = load_card(tag)
    assert stored.guard == card
    assert stored.temperature == 1.0  # a guarded model keeps the temperature it was fitted at
    loaded = Guard.load(folder, stored.guard)
    embedding = Predictor(folder).infer(x).embedding
    np.testing.assert_allclose(loaded.detector.score(embedding), detector.score(embedding))
    assert Predictor(folder).card.guard.conformal_thresholds == card.conformal_thresholds
    (folder / OOD_FILE).unlink()
    from braintumor.serving.predictor import ModelLoadError

    with pytest.raises(ModelLoadError, match=r"ood\.npz is missing"):
        Guard.load(folder, stored.guard)
    with pytest.raises(PackagingError, match="come together"):
        save_to_bentoml(tiny_model, stored)


def test_packaging_never_fits_a_temperature(bentoml_home, tiny_model, tiny_card, sample_arrays):
    """One calibration: the card's temperature (calibrate_winner's) is what ships."""
    x, y, _ = sample_arrays
    x60, y60 = np.concatenate([x, x]), np.concatenate([y, y])
    for temperature in (1.0, 1.7):
        card = tiny_card.model_copy(update={"temperature": temperature})
        tag, _ = package_model(
            tiny_model, card, quantize=False, parity_inputs=x60, parity_labels=y60, build=False
        )
        assert load_card(tag).temperature == temperature
