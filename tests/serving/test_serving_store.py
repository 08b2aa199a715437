"""Writing models into the BentoML model store (isolated home) with their card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from braintumor.serving.predictor import CARD_FILE, MODEL_FILE, ONNX_FILE, Predictor
from braintumor.serving.store import (
    PackagingError,
    find_project_dir,
    load_card,
    package_model,
    save_to_bentoml,
)


def test_saved_model_holds_model_onnx_card_and_labels(packaged, tiny_card):
    import bentoml

    stored = bentoml.models.get(packaged.tag)
    assert packaged.tag.startswith("brain-tumor-classifier:")
    assert {p.name for p in packaged.model_dir.iterdir()} >= {MODEL_FILE, ONNX_FILE, CARD_FILE}
    assert stored.info.labels == {
        "stage": "production",
        "backbone": "tiny_cnn",
        "model_version": "7",
    }
    assert load_card(packaged.tag) == tiny_card
    assert json.loads((packaged.model_dir / CARD_FILE).read_text()) == tiny_card.to_metadata()
    assert stored.info.metadata["preprocessing"]["image_size"] == 64


def test_saving_from_a_keras_file_serves_with_keras(packaged_keras_only):
    assert not (packaged_keras_only.model_dir / ONNX_FILE).exists()
    assert Predictor(packaged_keras_only.model_dir).backend == "keras"


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
