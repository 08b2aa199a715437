"""The web page in a real headless Chromium (Debian's package, driven by Playwright): upload
an MRI slice, see the label, the probability bars, the review flag with its reasons and the
Grad-CAM overlay next to the input. Skips when Chromium is not installed
(`apt-get install -y chromium`)."""

from __future__ import annotations

import shutil

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser():
    if shutil.which("chromium") is None:
        pytest.skip("Chromium is not installed: apt-get install -y chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield instance
        instance.close()


def image_loaded(page, selector: str) -> bool:
    return page.eval_on_selector(selector, "img => img.complete && img.naturalWidth > 0")


def test_upload_shows_label_bars_review_flag_and_overlay(browser, served_bento, sample_dir):
    page = browser.new_page()
    page.goto(served_bento + "/")
    page.wait_for_function("document.getElementById('model').textContent.includes('Model 7')")
    path = sample_dir / "Testing" / "glioma_tumor" / "image(43).jpg"
    page.set_input_files("#file", str(path))
    page.wait_for_selector("#result.shown", timeout=30_000)
    label = page.text_content("#label")
    assert label in {"glioma", "meningioma", "notumor", "pituitary"}
    bars = page.query_selector_all("#bars .bar")
    assert len(bars) == 4
    assert page.get_attribute("#bars .bar.top", "data-class") == label
    assert page.text_content("#review").strip()
    assert "Tumour probability" in page.text_content("#details")  # the binary view
    assert "(four classes)" in page.text_content("#task")  # the model's classes, from /metadata
    page.wait_for_function(
        "['overlay', 'input-image'].every(id => {"
        " const img = document.getElementById(id); return img.complete && img.naturalWidth > 0 })"
    )
    assert image_loaded(page, "#overlay") and image_loaded(page, "#input-image")
    assert page.text_content("#error") == ""
    page.close()


def test_bad_upload_shows_the_reason(browser, served_bento, tmp_path):
    page = browser.new_page()
    page.goto(served_bento + "/")
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not an MRI slice")
    page.set_input_files("#file", str(bad))
    page.wait_for_function("document.getElementById('error').textContent.length > 0")
    assert "not a recognised image format" in page.text_content("#error")
    assert "shown" not in (page.get_attribute("#result", "class") or "")
    page.close()


def test_a_flagged_upload_shows_why_it_needs_review(browser, served_bento, tmp_path):
    import numpy as np
    from PIL import Image

    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (96, 96), dtype=np.uint8)).save(noise)
    page = browser.new_page()
    page.goto(served_bento + "/")
    page.set_input_files("#file", str(noise))
    page.wait_for_selector("#result.shown", timeout=30_000)
    review = page.text_content("#review")
    assert "Needs review" in review and "does not look like a brain MRI slice" in review
    assert "noise_like" in page.text_content("#details")
    page.close()


@pytest.fixture
def keyed_page_server():
    """The real page and its /metadata behind the API-key and request-id middlewares, with a
    stand-in /explain, served by uvicorn on a loopback port; yields the base URL."""
    import base64
    import io
    import socket
    import threading
    import time

    import uvicorn
    from PIL import Image
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Mount, Route

    from braintumor.serving.audit import RequestIdMiddleware, request_id_of
    from braintumor.serving.auth import ApiKeyMiddleware
    from braintumor.serving.web import make_web_app

    buffer = io.BytesIO()
    Image.new("L", (8, 8), 128).save(buffer, "PNG")
    png = base64.b64encode(buffer.getvalue()).decode()
    metadata = {
        "model_version": "7",
        "task": "four_class",
        "class_names": ["glioma", "meningioma", "notumor", "pituitary"],
        "backbone": "tiny_cnn",
        "stage": "production",
        "metrics": {"weighted_f1": 0.5},
        "serving": {"input_shape": [64, 64, 1]},
    }

    async def explain(request):
        probabilities = {"glioma": 0.7, "meningioma": 0.1, "notumor": 0.1, "pituitary": 0.1}
        return JSONResponse(
            {
                "label": "glioma",
                "confidence": 0.7,
                "probabilities": probabilities,
                "needs_review": False,
                "review_reasons": [],
                "prediction_set": ["glioma"],
                "failed_checks": [],
                "ood_score": 0.1,
                "model_version": "7",
                "request_id": request_id_of(request.scope),
                "explained_class": "glioma",
                "overlay_png": png,
                "input_png": png,
            }
        )

    inner = Starlette(
        routes=[
            Route("/explain", explain, methods=["POST"]),
            Mount("/", make_web_app(lambda: metadata)),
        ]
    )
    app = RequestIdMiddleware(ApiKeyMiddleware(inner, keys=["page-key"]))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the page server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_with_api_keys_the_page_asks_once_and_sends_the_key(browser, keyed_page_server, tmp_path):
    from PIL import Image

    asked = []

    def answer(dialog) -> None:
        asked.append(dialog.message)
        dialog.accept("page-key")

    page = browser.new_page()
    page.on("dialog", answer)
    page.goto(keyed_page_server + "/")  # the page itself needs no key
    page.wait_for_function("document.getElementById('model').textContent.includes('Model 7')")
    slice_file = tmp_path / "slice.png"
    Image.new("L", (64, 64), 100).save(slice_file)
    page.set_input_files("#file", str(slice_file))
    page.wait_for_selector("#result.shown", timeout=30_000)
    assert asked == ["This service needs an API key:"]  # asked for /metadata, kept for /explain
    status = page.text_content("#status")
    assert "(request " in status and len(status.split("(request ")[1].rstrip(").")) == 32
    assert page.text_content("#error") == ""
    page.close()
