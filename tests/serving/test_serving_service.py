"""The BentoML service in-process (ASGI test client): every endpoint and every bad input."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from braintumor.preprocessing import load_and_preprocess
from tests.serving.helpers import load_service, tiny_spec

CLASSES = ["glioma", "meningioma", "notumor", "pituitary"]


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def client(packaged):
    from starlette.testclient import TestClient

    module = load_service(
        {"BRAINTUMOR_MODEL_TAG": packaged.tag, "BRAINTUMOR_MAX_UPLOAD_BYTES": "300000"}
    )
    with TestClient(module.BrainTumorClassifier.to_asgi()) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def good(sample_dir) -> bytes:
    return (sample_dir / "Testing" / "meningioma_tumor" / "image(67).jpg").read_bytes()


def assert_prediction(body: dict, tag: str) -> None:
    assert body["label"] in CLASSES
    assert list(body["probabilities"]) == CLASSES
    assert abs(sum(body["probabilities"].values()) - 1) < 1e-4
    assert body["confidence"] == max(body["probabilities"].values())
    assert body["needs_review"] == bool(body["review_reasons"])
    low = body["confidence"] < body["review_threshold"]
    assert ("low_confidence" in body["review_reasons"]) == low
    assert body["model_version"] == "7" and body["model_tag"] == tag


def test_predict_matches_the_offline_model_on_the_sample(client, packaged, sample_arrays):
    _, _, paths = sample_arrays
    for path in paths:
        response = client.post("/predict", files={"image": (path.name, path.read_bytes())})
        assert response.status_code == 200, response.text
        body = response.json()
        assert_prediction(body, packaged.tag)
        tensor = load_and_preprocess(path, tiny_spec())[None]
        expected = np.asarray(packaged.keras_model(tensor, training=False))[0]
        got = np.array([body["probabilities"][name] for name in CLASSES])
        np.testing.assert_allclose(got, expected, atol=2e-5)
        assert body["label"] == CLASSES[int(np.argmax(expected))]


def test_raw_body_dicom_16_bit_and_tiff_uploads(client, packaged, good):
    from pydicom.data import get_testdata_file

    gray = np.asarray(Image.open(io.BytesIO(good)).convert("L"))
    tiff = io.BytesIO()
    Image.fromarray(gray).save(tiff, "TIFF")
    uploads = {
        "raw jpeg": ({"content": good, "headers": {"content-type": "image/jpeg"}}),
        "dicom": (
            {
                "content": open(get_testdata_file("MR_small.dcm"), "rb").read(),  # noqa: SIM115
                "headers": {"content-type": "application/dicom"},
            }
        ),
        "16-bit png": {"files": {"image": ("a.png", png(gray.astype(np.uint16) * 257))}},
        "tiff": {"files": {"image": ("a.tif", tiff.getvalue())}},
    }
    answers = {}
    for name, kwargs in uploads.items():
        response = client.post("/predict", **kwargs)
        assert response.status_code == 200, (name, response.text)
        assert_prediction(response.json(), packaged.tag)
        answers[name] = response.json()["probabilities"]
    # The same slice as JPEG and as TIFF of its gray pixels: the same answer.
    for name in CLASSES:
        assert abs(answers["raw jpeg"][name] - answers["tiff"][name]) < 1e-5


BOMB = png(np.zeros((6000, 5000), dtype=np.uint8))  # ~30 KB, 30 million pixels


@pytest.mark.parametrize(
    "kwargs, status, reason",
    [
        ({"content": b"", "headers": {"content-type": "image/png"}}, 400, "missing_image"),
        ({"files": {"image": ("a.jpg", b"")}}, 400, "empty_file"),
        ({"files": {"image": ("a.jpg", b"this is not an image")}}, 415, "not_an_image"),
        ({"files": {"image": ("a.png", BOMB)}}, 413, "too_many_pixels"),
        ({"files": {"image": ("a.jpg", b"\xff\xd8" + bytes(300_001))}}, 413, "upload_too_large"),
        ({"files": {"scan": ("a.jpg", b"123")}}, 400, "missing_image"),
        ({"data": {"image": "http://169.254.169.254/"}}, 415, "unsupported_content_type"),
        ({"json": {"image": "aGVsbG8="}}, 415, "unsupported_content_type"),
    ],
)
def test_bad_input_gets_a_4xx_with_one_line_and_the_next_request_is_served(
    client, packaged, good, kwargs, status, reason
):
    response = client.post("/predict", **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == reason
    assert body["detail"] and "\n" not in body["detail"]
    after = client.post("/predict", files={"image": ("ok.jpg", good)})
    assert after.status_code == 200
    assert_prediction(after.json(), packaged.tag)


def test_truncated_and_undecodable_files_from_the_sample(client, sample_dir, good):
    truncated = sample_dir / "Training" / "meningioma_tumor" / "planted_truncated.jpg"
    response = client.post("/predict", files={"image": ("t.jpg", truncated.read_bytes())})
    assert response.status_code == 422 and response.json()["error"] == "truncated"
    broken = sample_dir / "Training" / "pituitary_tumor" / "planted_undecodable.jpg"
    response = client.post("/predict", files={"image": ("u.jpg", broken.read_bytes())})
    assert response.status_code in (415, 422)
    assert client.post("/predict", files={"image": ("ok.jpg", good)}).status_code == 200


def test_text_in_place_of_the_file_is_refused_without_fetching(client):
    response = client.post(
        "/predict", data={"image": "http://169.254.169.254/latest/meta-data"}, files={"x": b""}
    )
    assert response.status_code == 400 and response.json()["error"] == "not_a_file"


def test_request_body_over_the_limit_is_refused_before_reading(client):
    huge = bytes(100 * 1024 * 1024 + 1)  # default max_request_bytes is 100 MiB
    response = client.post("/predict", content=huge, headers={"content-type": "image/png"})
    assert response.status_code == 413 and response.json()["error"] == "upload_too_large"


def test_predict_batch_keeps_order_and_isolates_bad_images(client, packaged, sample_arrays):
    _, _, paths = sample_arrays
    files = [("images", (p.name, p.read_bytes())) for p in paths[:3]]
    files.insert(1, ("images", ("bad.jpg", b"nope")))
    response = client.post("/predict_batch", files=files)
    assert response.status_code == 200, response.text
    items = response.json()
    assert [item["ok"] for item in items] == [True, False, True, True]
    assert items[1]["error"]["error"] == "not_an_image"
    for item, path in zip([items[0], *items[2:]], paths[:3], strict=True):
        single = client.post("/predict", files={"image": (path.name, path.read_bytes())}).json()
        batched = item["prediction"]
        assert batched["label"] == single["label"]
        assert batched["needs_review"] == single["needs_review"]
        for name, value in batched["probabilities"].items():  # batch vs single: float rounding
            assert abs(value - single["probabilities"][name]) < 1e-5


def test_predict_batch_without_images_is_a_400(client):
    response = client.post("/predict_batch", files={"other": ("a", b"1")})
    assert response.status_code == 400
    assert response.json()["detail"][0]["type"] == "missing_image"


def test_metadata_health_and_page(client, packaged):
    metadata = client.get("/metadata").json()
    assert metadata["model_tag"] == packaged.tag and metadata["model_version"] == "7"
    assert metadata["class_names"] == CLASSES
    assert metadata["preprocessing"] == tiny_spec().to_dict()
    assert metadata["metrics"]["weighted_f1"] == 0.5 and metadata["data_hash"] == "0123456789abcdef"
    assert metadata["serving"]["backend"] == "onnx"
    assert metadata["serving"]["input_shape"] == [64, 64, 1]
    for path in ("/healthz", "/readyz", "/livez"):
        assert client.get(path).status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for marker in ('id="file"', 'id="label"', 'id="overlay"', 'id="bars"', 'fetch("explain"'):
        assert marker in page.text


def test_review_threshold_and_backend_come_from_the_environment(packaged, good):
    # BentoML registers its Prometheus metrics once per process, so a second ASGI app cannot
    # be built here: the service class is instantiated and called directly instead.
    module = load_service(
        {
            "BRAINTUMOR_MODEL_TAG": packaged.tag,
            "BRAINTUMOR_REVIEW_THRESHOLD": "1.0",
            "BRAINTUMOR_BACKEND": "onnx",
        }
    )
    strict = module.BrainTumorClassifier()
    answer = strict.predict(image=good)
    assert answer.review_threshold == 1.0 and answer.review_reasons == ["low_confidence"]
    assert strict.describe()["serving"]["backend"] == "onnx"
    module = load_service(
        {"BRAINTUMOR_MODEL_TAG": packaged.tag, "BRAINTUMOR_REVIEW_THRESHOLD": "0.25"}
    )
    assert module.BrainTumorClassifier().predict(image=good).needs_review is False


def test_a_bento_argument_pins_the_model_over_the_environment(packaged, packaged_unguarded):
    from bentoml._internal.utils.args import set_arguments

    set_arguments({"model_tag": packaged.tag})
    try:
        module = load_service({"BRAINTUMOR_MODEL_TAG": packaged_unguarded.tag})
        assert module.CONFIG.model_tag == packaged.tag
    finally:
        set_arguments({})


def test_explain_returns_the_prediction_with_a_gradcam_overlay(client, packaged, sample_arrays):
    import base64

    _, _, paths = sample_arrays
    path = paths[0]
    response = client.post("/explain", files={"image": (path.name, path.read_bytes())})
    assert response.status_code == 200, response.text
    body = response.json()
    single = client.post("/predict", files={"image": (path.name, path.read_bytes())}).json()
    assert {k: body[k] for k in single} == single
    assert body["explained_class"] == body["label"]
    overlay = Image.open(io.BytesIO(base64.b64decode(body["overlay_png"])))
    shown = Image.open(io.BytesIO(base64.b64decode(body["input_png"])))
    assert overlay.format == shown.format == "PNG"
    assert overlay.size == shown.size == (64, 64)
    assert overlay.mode == "RGB" and shown.mode == "L"
    expected_input = load_and_preprocess(path, tiny_spec())[..., 0].astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(shown), expected_input)
    assert np.asarray(overlay).std() > 0  # a real picture, not a blank


def test_explain_refuses_bad_input_like_predict(client):
    response = client.post("/explain", files={"image": ("x.jpg", b"not an image")})
    assert response.status_code == 415 and response.json()["error"] == "not_an_image"


def test_explain_without_the_float_graph_is_a_503_and_predictions_go_on(
    packaged, tmp_path, good, monkeypatch
):
    """A model entry whose float graph went missing can predict but not explain."""
    module = load_service({"BRAINTUMOR_MODEL_TAG": packaged.tag})
    service = module.BrainTumorClassifier()
    monkeypatch.setattr(service.predictor, "model_dir", tmp_path)  # no model.onnx there
    response = service.explain(image=good)
    assert response.status_code == 503
    assert b"explanation_unavailable" in response.body and b"model.onnx" in response.body
    assert service.predict(image=good).label in CLASSES


def test_predictions_are_logged_for_drift_monitoring_when_a_folder_is_set(
    packaged, tmp_path, good, sample_arrays
):
    import json

    _, _, paths = sample_arrays
    module = load_service(
        {
            "BRAINTUMOR_MODEL_TAG": packaged.tag,
            "BRAINTUMOR_PREDICTION_LOG_DIR": str(tmp_path),
        }
    )
    service = module.BrainTumorClassifier()
    single = service.predict(image=good)
    batch = service.predict_batch([paths[0].read_bytes(), b"not an image"])
    assert service.predict(image=b"").status_code == 400  # refused uploads are not logged
    (log,) = tmp_path.glob("predictions-*.jsonl")
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["predicted_label"] for r in records] == [single.label, batch[0].prediction.label]
    assert all(r["model_version"] == "7" for r in records)
    assert records[0]["probabilities"] == pytest.approx(single.probabilities, abs=1e-5)
    assert records[0]["features"]  # image features for the drift report
    # The guard's monitored columns travel with them.
    assert records[0]["features"]["ood_score"] == pytest.approx(single.ood_score, abs=1e-5)
    assert records[0]["features"]["out_of_distribution"] == 0.0


def test_no_prediction_log_without_a_folder(packaged, good):
    module = load_service({"BRAINTUMOR_MODEL_TAG": packaged.tag})
    service = module.BrainTumorClassifier()
    assert not service.prediction_log.enabled
    assert service.predict(image=good).label in CLASSES
