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
