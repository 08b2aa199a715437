"""The guard in the service: review reasons on made inputs and on none of the samples, the
hard reject, what /metadata and /metrics show, and serving without TensorFlow."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.serving.helpers import load_service

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def striped_head() -> np.ndarray:
    """A head-shaped ellipse on black filled with stripes: passes the input checks (it is
    grey, smooth enough, with a dark background), yet is nothing the model has seen."""
    yy, xx = np.mgrid[:256, :256]
    head = ((yy - 128) / 100) ** 2 + ((xx - 128) / 80) ** 2 < 1
    return np.where(head, (np.sin(xx / 3.0) > 0) * 200 + 40, 0).astype(np.uint8)


@pytest.fixture(scope="module")
def service(packaged):
    return load_service({"BRAINTUMOR_MODEL_TAG": packaged.tag}).BrainTumorClassifier()


def test_no_shipped_sample_image_is_flagged_by_the_guard(service, sample_arrays):
    _, _, paths = sample_arrays
    for path in paths:
        answer = service.predict(image=path.read_bytes())
        assert answer.label in answer.prediction_set, path
        assert not {"out_of_distribution", "not_brain_mri"} & set(answer.review_reasons), (
            path,
            answer.review_reasons,
        )
        assert ("ambiguous" in answer.review_reasons) == (len(answer.prediction_set) != 1)
        assert answer.failed_checks == [] and answer.ood_score is not None
        assert answer.energy is not None
        assert answer.tumour_probability == pytest.approx(1 - answer.probabilities["notumor"])


def test_non_mri_inputs_are_flagged_not_brain_mri_with_the_failed_check(service):
    from sklearn.datasets import load_sample_image

    rng = np.random.default_rng(0)
    photo = io.BytesIO()
    Image.fromarray(load_sample_image("china.jpg")).save(photo, "JPEG")
    made = {
        "noise_like": png(rng.integers(0, 256, (256, 256), dtype=np.uint8)),
        "nearly_constant": png(np.full((128, 128), 100, np.uint8)),
        "colour_image": photo.getvalue(),
    }
    for check, data in made.items():
        answer = service.predict(image=data)
        assert "not_brain_mri" in answer.review_reasons and answer.needs_review, check
        assert check in answer.failed_checks, (check, answer.failed_checks)


def test_an_unfamiliar_slice_like_image_is_flagged_out_of_distribution(service, packaged):
    answer = service.predict(image=png(striped_head()))
    assert answer.failed_checks == []  # the cheap checks let it through ...
    assert "out_of_distribution" in answer.review_reasons  # ... the detector does not
    assert answer.ood_score > packaged.card.guard.ood_threshold


def test_ambiguous_and_low_confidence_answers_from_made_model_outputs(service, sample_arrays):
    """Made model outputs through the guard: a class is in the set when p >= 0.4 here."""
    from braintumor.serving.guard import Guard
    from braintumor.serving.predictor import ModelOutputs

    card = service.card.guard.model_copy(update={"conformal_thresholds": (0.6,) * 4})
    guard = Guard(card, service.guard.detector)
    x, _, _ = sample_arrays
    embedding = service.predictor.infer(x[:1]).embedding  # a familiar embedding
    two_way = np.array([[0.48, 0.47, 0.03, 0.02]])  # two classes equally plausible
    sure = np.array([[0.97, 0.01, 0.01, 0.01]])
    for probs, expected, in_set in (
        (two_way, ["low_confidence", "ambiguous"], ["glioma", "meningioma"]),
        (sure, [], ["glioma"]),
    ):
        outputs = ModelOutputs(probs, np.log(probs), embedding)
        (assessment,) = guard.assess(outputs, [[]], service.card.class_names, 0.6)
        assert assessment.reasons == expected and assessment.prediction_set == in_set


def test_hard_reject_turns_non_mri_into_a_422_and_lets_slices_through(packaged, sample_arrays):
    _, _, paths = sample_arrays
    module = load_service(
        {"BRAINTUMOR_MODEL_TAG": packaged.tag, "BRAINTUMOR_REJECT_NOT_MRI": "true"}
    )
    strict = module.BrainTumorClassifier()
    noise = png(np.random.default_rng(1).integers(0, 256, (128, 128), dtype=np.uint8))
    response = strict.predict(image=noise)
    assert response.status_code == 422
    body = json.loads(response.body)
    assert body["error"] == "not_a_brain_mri" and "noise_like" in body["detail"]
    batch = strict.predict_batch([noise, paths[0].read_bytes()])
    assert [item.ok for item in batch] == [False, True]
    assert batch[0].error.error == "not_a_brain_mri"
    assert strict.describe()["serving"]["reject_not_mri"] is True


def test_metadata_shows_the_guard_thresholds_and_their_validation_rates(service, packaged):
    guard = service.describe()["guard"]
    assert guard["ood_threshold"] == packaged.card.guard.ood_threshold
    assert guard["detector"] == "mahalanobis" and guard["false_review_rate"] == 0.05
    assert len(guard["conformal_thresholds"]) == 4
    assert set(guard["validation_rates"]) == {
        "low_confidence", "ambiguous", "out_of_distribution", "not_brain_mri", "any"
    }  # fmt: skip


SERVE_WITHOUT_TF = """
import sys
sys.path[:0] = [{src!r}, {repo!r}]
from tests.serving.helpers import load_service
from starlette.testclient import TestClient
module = load_service({{"BRAINTUMOR_MODEL_TAG": {tag!r}}})
image = open({image!r}, "rb").read()
with TestClient(module.BrainTumorClassifier.to_asgi()) as client:
    assert client.post("/predict", files={{"image": ("a.jpg", image)}}).status_code == 200
    explained = client.post("/explain", files={{"image": ("a.jpg", image)}})
    assert explained.status_code == 200 and explained.json()["overlay_png"]
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf2onnx"))
print("LOADED", loaded)
"""


def test_serving_a_prediction_and_an_explanation_imports_no_tensorflow(packaged, sample_arrays):
    _, _, paths = sample_arrays
    code = SERVE_WITHOUT_TF.format(
        src=str(REPO / "src"), repo=str(REPO), tag=packaged.tag, image=str(paths[0])
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "LOADED []" in result.stdout, result.stdout[-500:]
