"""The abstention benchmark runs end to end on the test Bento and writes every figure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.training_helpers import sample_splits_with_test

pytestmark = pytest.mark.slow


def test_ood_suite_holds_every_kind_and_the_checks_see_the_obvious_ones(sample_arrays):
    from benchmarks.abstention import PER_KIND, ood_suite
    from braintumor.guard.input_checks import failed_checks
    from braintumor.imaging import decode_image

    _, _, paths = sample_arrays
    suite = ood_suite([decode_image(p.read_bytes()).pixels for p in paths[:5]])
    assert set(suite) == {
        "noise_uniform", "noise_gaussian_smoothed", "constant", "gradient", "photo_colour",
        "photo_grey", "text", "slice_occluded", "slice_blurred",
    }  # fmt: skip
    assert all(len(items) == PER_KIND for items in suite.values())
    assert all(img.dtype == np.uint8 and img.ndim == 2 for v in suite.values() for img, _ in v)
    flagged = {
        kind: np.mean([bool(failed_checks(image, colour)) for image, colour in items])
        for kind, items in suite.items()
    }
    assert flagged["noise_uniform"] == flagged["constant"] == 1.0
    assert flagged["photo_colour"] >= 0.8  # a crop of sky or wall can be nearly grey
    assert flagged["slice_blurred"] < 1.0  # left to the OOD detector


def test_abstention_benchmark_writes_its_figures(built_bento, sample_dir: Path, tmp_path: Path):
    from benchmarks.abstention import main

    table = sample_splits_with_test(sample_dir, tmp_path / "splits.csv")
    out = tmp_path / "abstention.json"
    figures = main(
        [
            "--bento", built_bento, "--data-root", str(sample_dir), "--splits", str(table),
            "--skip-serving", "--out", str(out),
        ]
    )  # fmt: skip
    stored = json.loads(out.read_text())
    assert stored["command"].startswith("python benchmarks/abstention.py --bento")
    assert stored["git_commit"] and stored["measured_at"] and stored["machine"]["cpu_cores"]
    assert stored["bento"] == built_bento == figures["bento"]
    auroc = stored["ood_suite"]["auroc"]
    assert set(auroc["noise_uniform"]) >= {"guard", "served_ood_score", "energy", "max_softmax"}
    assert {"detector_mahalanobis", "detector_knn"} <= set(auroc["text"])
    assert auroc["noise_uniform"]["guard"] == 1.0  # the input checks catch all of them
    selective = stored["selective_prediction"]
    assert selective["test_images"] == 9 and 0 <= selective["coverage"] <= 1
    assert set(stored["conformal"]["test_coverage_per_class"]) == {
        "glioma", "meningioma", "notumor", "pituitary"
    }  # fmt: skip
    assert stored["choice"]["served_detector"] == "mahalanobis"
