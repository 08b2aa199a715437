"""The BentoML service in-process (ASGI test client): every endpoint and every bad input."""

from __future__ import annotations

import hashlib
import io
import json
from concurrent.futures import ThreadPoolExecutor

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
    for marker in ('id="file"', 'id="label"', 'id="overlay"', 'id="bars"', 'api("explain"'):
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
    same = [key for key in single if key != "request_id"]  # each request has its own id
    assert {k: body[k] for k in same} == {k: single[k] for k in same}
    assert body["request_id"] != single["request_id"]
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


def is_generated(request_id: str) -> bool:
    return len(request_id) == 32 and all(c in "0123456789abcdef" for c in request_id)


def test_every_answer_carries_its_request_id_echoed_or_generated(client, good):
    image = {"image": ("ok.jpg", good)}
    given = client.post("/predict", files=image, headers={"X-Request-ID": "scan-0042"})
    assert given.status_code == 200, given.text
    assert given.headers["x-request-id"] == given.json()["request_id"] == "scan-0042"
    generated = client.post("/predict", files=image)
    assert is_generated(generated.headers["x-request-id"])
    assert generated.json()["request_id"] == generated.headers["x-request-id"]
    unusable = client.post("/predict", files=image, headers={"X-Request-ID": "x" * 129})
    assert is_generated(unusable.headers["x-request-id"])
    assert unusable.json()["request_id"] == unusable.headers["x-request-id"]
    batch = client.post(
        "/predict_batch",
        files=[("images", ("ok.jpg", good)), ("images", ("bad.jpg", b"nope"))],
        headers={"X-Request-ID": "batch-1"},
    )
    assert batch.status_code == 200 and batch.headers["x-request-id"] == "batch-1"
    items = batch.json()
    assert items[0]["prediction"]["request_id"] == "batch-1" and not items[1]["ok"]
    explained = client.post("/explain", files=image, headers={"X-Request-ID": "explain-1"})
    assert explained.headers["x-request-id"] == explained.json()["request_id"] == "explain-1"
    refused = client.post(
        "/predict", files={"image": ("a.jpg", b"not an image")}, headers={"X-Request-ID": "r-9"}
    )
    assert refused.status_code == 415 and refused.headers["x-request-id"] == "r-9"


@pytest.fixture
def audit_log(tmp_path, monkeypatch):
    """The running service (the `client` app's instance) logging to `tmp_path`."""
    import bentoml

    from braintumor.monitoring.prediction_log import PredictionLogger

    service = bentoml.get_current_service()
    logger = PredictionLogger(
        tmp_path, model_version=service.card.model_version, class_names=service.card.class_names
    )
    monkeypatch.setattr(service, "prediction_log", logger)
    return tmp_path


def test_each_answer_is_one_audit_line_of_the_prediction_log(
    client, good, sample_arrays, audit_log
):
    _, _, paths = sample_arrays
    single = client.post(
        "/predict", files={"image": ("ok.jpg", good)}, headers={"X-Request-ID": "audit-1"}
    ).json()
    raw_bytes = paths[1].read_bytes()
    raw = client.post("/predict", content=raw_bytes, headers={"content-type": "image/jpeg"}).json()
    uploads = {f"batch-{i}": [paths[i].read_bytes(), paths[i + 4].read_bytes()] for i in range(3)}
    with ThreadPoolExecutor(3) as pool:  # concurrent requests, batched together or not
        futures = {
            request_id: pool.submit(
                client.post,
                "/predict_batch",
                files=[("images", (f"{n}.jpg", data)) for n, data in enumerate(datas)],
                headers={"X-Request-ID": request_id},
            )
            for request_id, datas in uploads.items()
        }
    assert client.post("/predict", files={"image": ("x.jpg", b"not an image")}).status_code == 415

    (log,) = audit_log.glob("predictions-*.jsonl")
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) == 2 + 6  # the refused upload is not an answer
    for record in records:
        assert record["v"] == 2 and record["model_version"] == "7"
        assert record["latency_ms"] > 0 and record["timestamp"].endswith("+00:00")
        assert record["needs_review"] == bool(record["review_reasons"])
    first, second = records[:2]
    assert first["request_id"] == single["request_id"] == "audit-1"
    assert first["input_sha256"] == hashlib.sha256(good).hexdigest()
    assert first["predicted_label"] == single["label"]
    assert first["needs_review"] == single["needs_review"]
    assert first["review_reasons"] == single["review_reasons"]
    assert first["probabilities"] == pytest.approx(single["probabilities"], abs=1e-5)
    assert second["request_id"] == raw["request_id"] and is_generated(second["request_id"])
    assert second["input_sha256"] == hashlib.sha256(raw_bytes).hexdigest()
    for request_id, future in futures.items():
        answers = future.result().json()
        assert [item["prediction"]["request_id"] for item in answers] == [request_id] * 2
        logged = [r for r in records if r["request_id"] == request_id]
        expected = [hashlib.sha256(data).hexdigest() for data in uploads[request_id]]
        assert sorted(r["input_sha256"] for r in logged) == sorted(expected)
        labels = {r["input_sha256"]: r["predicted_label"] for r in logged}
        assert [labels[d] for d in expected] == [item["prediction"]["label"] for item in answers]


def test_api_keys_from_the_environment_guard_the_service_but_not_its_probes(
    client, packaged, good, tmp_path
):
    """The middleware stack service.py builds with keys set (from the variable and a file),
    in front of the running service. (BentoML registers its Prometheus metrics once per
    process, so the keyed service cannot get an ASGI app of its own here.)"""
    import httpx

    from braintumor.serving.audit import RequestIdMiddleware
    from braintumor.serving.auth import ApiKeyMiddleware
    from braintumor.serving.uploads import BodySizeLimitMiddleware

    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("# issued 2026-11\nkey-from-file\n")
    keyed = load_service(
        {
            "BRAINTUMOR_MODEL_TAG": packaged.tag,
            "BRAINTUMOR_API_KEYS": "key-one",
            "BRAINTUMOR_API_KEYS_FILE": str(keys_file),
        }
    )
    stack = keyed.BrainTumorClassifier.middlewares
    assert [cls for cls, _ in stack] == [
        RequestIdMiddleware,
        ApiKeyMiddleware,
        BodySizeLimitMiddleware,
    ]
    assert stack[1][1]["keys"] == ("key-one", "key-from-file")
    app = client.app
    for cls, options in reversed(stack):
        app = cls(app, **options)

    async def calls() -> dict[str, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            image = {"image": ("ok.jpg", good)}
            answers = {
                "no key": await http.post("/predict", files=image),
                "wrong key": await http.post("/predict", files=image, headers={"X-API-Key": "no"}),
                "X-API-Key": await http.post(
                    "/predict", files=image, headers={"X-API-Key": "key-one"}
                ),
                "Bearer": await http.post(
                    "/explain", files=image, headers={"Authorization": "Bearer key-from-file"}
                ),
                "batch": await http.post("/predict_batch", files=[("images", ("a.jpg", good))]),
                "metadata": await http.get("/metadata"),
            }
            # /metrics is left out: BentoML's in-process app sends no answer to it at all,
            # keys or not (test_serving_access.py checks the key check lets it through).
            for path in ("/healthz", "/readyz", "/livez", "/"):
                answers[path] = await http.get(path)
            return answers

    answers = client.portal.call(calls)
    for name in ("no key", "wrong key", "batch", "metadata"):
        response = answers[name]
        assert response.status_code == 401, name
        assert response.json()["error"] == "unauthorized" and response.json()["detail"]
        assert is_generated(response.headers["x-request-id"])
    assert "needs an API key" in answers["no key"].json()["detail"]
    assert "not valid" in answers["wrong key"].json()["detail"]
    for name in ("X-API-Key", "Bearer"):
        assert answers[name].status_code == 200, answers[name].text
        assert answers[name].json()["request_id"] == answers[name].headers["x-request-id"]
    for path in ("/healthz", "/readyz", "/livez", "/"):
        assert answers[path].status_code == 200, path
    open_stack = load_service({"BRAINTUMOR_MODEL_TAG": packaged.tag}).BrainTumorClassifier
    assert ApiKeyMiddleware not in [cls for cls, _ in open_stack.middlewares]
