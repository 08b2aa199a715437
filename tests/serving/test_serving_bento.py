"""The real thing: `bentoml build` of bentofile.yaml, the Bento's contents (what
`bentoml containerize` ships), and `bentoml serve <bento tag>` answering on loopback with the
offline model's predictions. This is the smoke test a promotion must pass."""

from __future__ import annotations

import io
import tarfile
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import yaml
from PIL import Image

from braintumor.preprocessing import load_and_preprocess
from tests.serving.helpers import tiny_spec

pytestmark = pytest.mark.slow
CLASSES = ["glioma", "meningioma", "notumor", "pituitary"]


@pytest.fixture(scope="module")
def bento_dir(built_bento):
    import bentoml

    return __import__("pathlib").Path(bentoml.get(built_bento).path)


def test_bento_pins_the_model_and_holds_the_service_and_page(bento_dir, built_bento, packaged):
    info = yaml.safe_load((bento_dir / "bento.yaml").read_text())
    assert built_bento.startswith("brain_tumor_classifier:")
    assert info["args"]["model_tag"] == packaged.tag
    assert [m["tag"] for m in info["services"][0]["models"]] == [packaged.tag]
    assert info["labels"]["model_version"] == "7" and info["labels"]["purpose"] == "test"
    routes = {route["route"] for route in info["schema"]["routes"]}
    assert routes == {"/predict", "/predict_batch", "/explain"}
    src = bento_dir / "src"
    for needed in (
        "service.py",
        "src/braintumor/imaging.py",
        "src/braintumor/preprocessing.py",
        "src/braintumor/constants.py",
        "src/braintumor/tasks.py",  # the card checks its classes are its task's
        "src/braintumor/serving/predictor.py",
        "src/braintumor/serving/static/index.html",
        "src/braintumor/monitoring/prediction_log.py",
        "src/braintumor/evaluation/gradcam.py",
        "src/braintumor/guard/ood.py",
        "src/braintumor/guard/conformal.py",
        "src/braintumor/guard/input_checks.py",
        "src/braintumor/guard/review.py",
        "src/braintumor/serving/guard.py",
    ):
        assert (src / needed).is_file(), needed
    # Serving only: no training code, pipelines, tests or data in the image.
    for absent in (
        "src/braintumor/training",
        "src/braintumor/data",
        "src/braintumor/monitoring/drift.py",  # Evidently stays out of the image
        "src/braintumor/evaluation/metrics.py",
        "src/braintumor/models",  # Keras layers and export: training side
        "src/braintumor/guard/fit.py",  # scikit-learn and crepes: training side
        "pipelines",
        "steps",
        "tests",
        "data",
    ):
        assert not (src / absent).exists(), absent


def test_dockerfile_and_requirements_are_complete(bento_dir):
    dockerfile = (bento_dir / "env" / "docker" / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile
    assert "requirements.txt" in dockerfile and "EXPOSE 3000" in dockerfile
    assert "entrypoint.sh" in dockerfile and (bento_dir / "env/docker/entrypoint.sh").is_file()
    requirements = (bento_dir / "env" / "python" / "requirements.txt").read_text()
    for package in ("onnxruntime", "pydicom", "opencv-python-headless", "pillow", "bentoml=="):
        assert package in requirements, package
    # Serving runs the ONNX serving graph: no TensorFlow or Keras in the container.
    for absent in ("tensorflow", "keras", "tf2onnx", "scikit-learn", "crepes"):
        assert absent not in requirements.lower(), absent


def test_exported_bento_carries_the_model_files(built_bento, packaged, tmp_path):
    """`bentoml export` (like containerize) copies the pinned model into the archive."""
    import bentoml

    archive = bentoml.export_bento(built_bento, str(tmp_path / "bento.bento"))
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    name, version = packaged.tag.split(":")
    for file in ("model.keras", "model.onnx", "card.json", "ood.npz"):
        assert any(n.endswith(f"models/{name}/{version}/{file}") for n in names), file


def test_served_bento_answers_like_the_offline_model(served_bento, packaged, sample_arrays):
    _, _, paths = sample_arrays
    with httpx.Client(base_url=served_bento, timeout=30) as client:
        for path in paths:
            response = client.post("/predict", files={"image": (path.name, path.read_bytes())})
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["model_tag"] == packaged.tag and body["model_version"] == "7"
            tensor = load_and_preprocess(path, tiny_spec())[None]
            expected = np.asarray(packaged.keras_model(tensor, training=False))[0]
            got = np.array([body["probabilities"][name] for name in CLASSES])
            np.testing.assert_allclose(got, expected, atol=2e-5)
            assert body["label"] == CLASSES[int(np.argmax(expected))]


def test_served_bento_survives_bad_input_and_reports_metrics(served_bento, sample_dir):
    good = (sample_dir / "Testing" / "no_tumor" / "image(5).jpg").read_bytes()
    truncated = (
        sample_dir / "Training" / "meningioma_tumor" / "planted_truncated.jpg"
    ).read_bytes()
    bad = [
        ({"files": {"image": ("e.jpg", b"")}}, 400),
        ({"files": {"image": ("t.jpg", truncated)}}, 422),
        ({"files": {"image": ("n.jpg", b"GIF89a-not-really")}}, 415),
        ({"files": {"image": ("big.jpg", bytes(400_000))}}, 413),
        ({"content": b"", "headers": {"content-type": "image/png"}}, 400),
    ]
    with httpx.Client(base_url=served_bento, timeout=30) as client:
        for kwargs, status in bad:
            response = client.post("/predict", **kwargs)
            assert response.status_code == status, response.text
            assert "\n" not in response.json()["detail"]
            assert client.post("/predict", files={"image": ("g.jpg", good)}).status_code == 200
        noise = np.random.default_rng(0).integers(0, 256, (96, 96), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(noise).save(buffer, "PNG")
        flagged = client.post("/predict", files={"image": ("noise.png", buffer.getvalue())})
        assert flagged.status_code == 200 and "not_brain_mri" in flagged.json()["review_reasons"]
        metadata = client.get("/metadata").json()
        assert metadata["serving"]["backend"] == "onnx"
        assert metadata["guard"]["validation_rates"]["any"] >= 0
        assert client.get("/").status_code == 200
        metrics = client.get("/metrics").text
    assert 'braintumor_rejected_uploads_total{reason="truncated"}' in metrics
    assert "braintumor_predictions_total" in metrics
    assert 'braintumor_review_reasons_total{reason="not_brain_mri"}' in metrics
    assert "bentoml_service_request_duration_seconds" in metrics


def test_served_bento_batches_concurrent_requests(served_bento, sample_arrays):
    _, _, paths = sample_arrays
    files = [("images", (p.name, p.read_bytes())) for p in paths[:2]]

    def call(number: int) -> list[dict]:
        request_id = f"concurrent-{number}"
        response = httpx.post(
            f"{served_bento}/predict_batch",
            files=files,
            headers={"X-Request-ID": request_id},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        # Requests batched together keep their own ids, in the header and in each answer.
        assert response.headers["x-request-id"] == request_id
        assert [item["prediction"]["request_id"] for item in response.json()] == [request_id] * 2
        return response.json()

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(call, range(16)))
    assert all([item["ok"] for item in answer] == [True, True] for answer in answers)
    # Batching changes nothing beyond float rounding (batch sizes vary from call to call).
    for answer in answers:
        for item, first in zip(answer, answers[0], strict=True):
            assert item["prediction"]["label"] == first["prediction"]["label"]
            for name, value in item["prediction"]["probabilities"].items():
                assert abs(value - first["prediction"]["probabilities"][name]) < 1e-5
    metrics = httpx.get(f"{served_bento}/metrics").text
    count = [
        line
        for line in metrics.splitlines()
        if line.startswith("bentoml_service_adaptive_batch_size_count")
        and 'method_name="predict_batch"' in line
    ]
    assert count and float(count[0].split()[-1]) >= 1
