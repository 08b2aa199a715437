"""The run report is one self-contained HTML file showing what a reviewer needs."""

from __future__ import annotations

import io
import re

import numpy as np
from PIL import Image

from braintumor.reporting import GalleryItem, RunReport, render_run_report


def _png(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8), value, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_report_is_self_contained_and_shows_every_part() -> None:
    report = RunReport(
        title="Run 3 <script>",
        protocol="resplit",
        preprocessing="clahe",
        data_hash="dvc:abc.dir",
        git_commit="1234abc",
        leaderboard=[
            {
                "backbone": "custom_cnn",
                "val_weighted_f1": 0.93,
                "val_weighted_f1_ci": [0.9, 0.95],
                "val_min_recall": 0.88,
                "params": 1_200_000,
                "train_seconds": 900.0,
            },
            {"backbone": "mobilenetv2", "val_weighted_f1": 0.91},
        ],
        winner="custom_cnn",
        test_metrics={
            "weighted_f1": 0.925,
            "weighted_f1_ci": [0.9, 0.95],
            "n": 400,
            "per_class": {"glioma": {"precision": 0.9, "recall": 0.86, "f1": 0.88, "support": 100}},
            "by_source": {
                "figshare": {
                    "n": 150,
                    "weighted_f1": 0.8125,
                    "weighted_f1_ci": [0.7, 0.9],
                    "balanced_accuracy": 0.8,
                    "per_class": {
                        "glioma": {"recall": 0.75, "support": 100},
                        "notumor": {"recall": 0.0, "support": 0},
                    },
                }
            },
        },
        decision={
            "passed": False,
            "target_stage": None,
            "checks": [{"name": "f1", "passed": False, "detail": "weighted F1 0.8 < floor 0.9"}],
        },
        plots={"confusion matrix": _png(10)},
        gallery=[GalleryItem("glioma", "meningioma", 0.61, _png(20), _png(30))],
        audit={"clusters": 12, "testing_leak_share": 0.69},
        notes=["official protocol has no notumor test images"],
    )
    html = render_run_report(report)
    assert "<script>" not in html and "Run 3 &lt;script&gt;" in html  # escaped
    assert not re.search(r"(src|href)=\"(https?:)?//", html)  # nothing fetched from outside
    assert html.count("data:image/png;base64,") == 3
    assert '<tr class="winner"><td>custom_cnn</td><td>0.9300</td><td>[0.9000, 0.9500]</td>' in html
    assert "REJECTED" in html and "weighted F1 0.8 &lt; floor 0.9" in html
    assert "resplit" in html and "dvc:abc.dir" in html and "1,200,000" in html
    assert "true <b>glioma</b>, predicted <b>meningioma</b> (61%): wrong" in html
    assert "official protocol has no notumor test images" in html
    assert "<td>figshare</td><td>150</td><td>0.8125</td>" in html and "0.7500" in html
