"""Drift reports: a real change of acquisition is caught, the same distribution is not."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from braintumor.imaging import decode_image
from braintumor.monitoring.drift import (
    ColumnDrift,
    DriftInputError,
    DriftPolicy,
    decide_drift,
    drift_report,
    score_kind,
)
from braintumor.monitoring.features import feature_table, list_images


def darken_and_shrink(gray: np.ndarray) -> np.ndarray:
    """Another scanner / export: 40% of the intensity at half the resolution."""
    darker = (gray.astype(np.float32) * 0.4).astype(np.uint8)
    size = (gray.shape[1] // 2, gray.shape[0] // 2)
    return cv2.resize(darker, size, interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def sample_training(sample_dir: Path) -> tuple[pd.DataFrame, list[np.ndarray]]:
    skipped: list = []
    frame = feature_table(list_images(sample_dir / "Training"), skipped=skipped)
    grays = [decode_image(Path(p).read_bytes()).pixels for p in frame["image"]]
    return frame, grays


@pytest.fixture(scope="module")
def transformed_result(sample_training):
    reference, grays = sample_training
    current = feature_table([darken_and_shrink(g) for g in grays])
    return drift_report(reference, current)


def test_darkened_and_resized_images_drift(transformed_result):
    result = transformed_result
    assert result.drifted
    assert result.share_drifted > 0.5
    for column in ("width", "height", "intensity_mean", "head_intensity_mean", "sharpness"):
        assert result.per_column[column].drifted, column
        assert result.per_column[column].score < 0.05  # K-S p-value on 25 vs 25 images
    assert result.reference_rows == result.current_rows == 25
    assert "columns drifted" in result.reasons[0]


@pytest.mark.parametrize(
    ("change", "column"),
    [
        (lambda g: cv2.resize(g, (g.shape[1] // 2, g.shape[0] // 2)), "width"),
        (lambda g: cv2.GaussianBlur(g, (0, 0), 2), "sharpness"),
    ],
    ids=["half_resolution", "blur"],
)
def test_a_change_that_moves_one_feature_is_caught_by_its_strength(sample_training, change, column):
    """A new resolution moves only the size columns, a blurrier scanner only sharpness: too
    few columns for the share rule, but each far past its threshold."""
    reference, grays = sample_training
    result = drift_report(reference, feature_table([change(g) for g in grays]))
    assert result.drifted
    assert column in result.strongly_drifted_columns
    assert any(f"{column} drifted strongly" in reason for reason in result.reasons)
    lenient = DriftPolicy(strong_p_value=None, drift_share=0.9)
    assert not decide_drift(result.per_column, lenient)[0]


def test_an_image_set_does_not_drift_from_itself(sample_training):
    reference, _ = sample_training
    result = drift_report(reference, reference.sample(frac=1.0, random_state=1))
    assert not result.drifted
    assert result.share_drifted == 0.0
    assert result.drifted_columns == []


@pytest.mark.slow
@pytest.mark.full_data
def test_random_halves_of_the_full_training_set_do_not_drift(full_dataset_dir: Path):
    frame = feature_table(list_images(full_dataset_dir / "Training"), skipped=[])
    order = np.random.default_rng(7).permutation(len(frame))
    half = len(frame) // 2
    result = drift_report(frame.iloc[order[:half]], frame.iloc[order[half:]])
    assert len(frame) > 2800
    assert not result.drifted, result.reasons
    assert result.share_drifted < result.policy.drift_share
    # Above 1,000 rows Evidently uses the normed Wasserstein distance.
    assert result.per_column["intensity_mean"].method.startswith("Wasserstein")


def test_report_html_is_one_self_contained_file(transformed_result, tmp_path: Path):
    html = transformed_result.html
    assert html.lstrip().lower().startswith("<html") or "<!doctype html" in html[:200].lower()
    assert not re.search(r"<script[^>]+src=", html)
    assert not re.search(r"<link[^>]+href=[\"']https?:", html)
    assert "intensity_mean" in html
    # Our verdict comes first, inside <body>, before Evidently's share-only headline.
    body = html.index("<body>")
    assert body < html.index("Drift policy verdict: DRIFT DETECTED") < body + 2000
    assert html.count("<li>") >= len(transformed_result.reasons)
    path = transformed_result.save_html(tmp_path / "reports" / "drift.html")
    assert path.read_text(encoding="utf-8") == html


def test_json_and_summary_are_plain_data(transformed_result):
    metrics = transformed_result.json["metrics"]
    assert any("DriftedColumnsCount" in m["metric_name"] for m in metrics)
    summary = json.loads(json.dumps(transformed_result.summary()))
    assert summary["drifted"] is True
    assert set(summary["drifted_columns"]) == set(transformed_result.drifted_columns)
    assert summary["per_column"]["width"]["drifted"] is True
    assert "html" not in summary


def test_another_policy_decides_on_the_same_result(transformed_result):
    share = transformed_result.share_drifted
    assert decide_drift(transformed_result.per_column, transformed_result.policy)[0]
    lenient = DriftPolicy(
        drift_share=min(1.0, share + 0.01), critical_columns=(), strong_p_value=None
    )
    assert not decide_drift(transformed_result.per_column, lenient)[0]


def test_drifted_confidence_alone_raises_the_alarm():
    rng = np.random.default_rng(0)
    n = 60
    base = {"intensity_mean": rng.normal(50, 5, n), "sharpness": rng.normal(300, 30, n)}
    reference = pd.DataFrame({**base, "confidence": rng.uniform(0.85, 1.0, n)})
    current = pd.DataFrame({**base, "confidence": rng.uniform(0.4, 0.7, n)})
    result = drift_report(reference, current)
    assert result.drifted_columns == ["confidence"]
    assert result.share_drifted == pytest.approx(1 / 3)
    assert any("critical column confidence" in reason for reason in result.reasons)
    without_critical = DriftPolicy(critical_columns=(), drift_share=0.5, strong_p_value=None)
    assert not drift_report(reference, current, policy=without_critical).drifted


def test_a_rising_share_of_out_of_distribution_answers_alone_raises_the_alarm():
    """The guard's flag, logged with every answer, against the validation reference."""
    rng = np.random.default_rng(1)
    n = 120
    base = {"intensity_mean": rng.normal(50, 5, n), "sharpness": rng.normal(300, 30, n)}
    reference = pd.DataFrame({**base, "out_of_distribution": (rng.random(n) < 0.05) * 1.0})
    current = pd.DataFrame({**base, "out_of_distribution": (rng.random(n) < 0.4) * 1.0})
    result = drift_report(reference, current)
    assert result.drifted and result.drifted_columns == ["out_of_distribution"]
    assert any("critical column out_of_distribution" in r for r in result.reasons)


def test_predicted_label_is_compared_as_a_category():
    labels = ["glioma", "meningioma", "notumor", "pituitary"]
    reference = pd.DataFrame({"predicted_label": labels * 15, "confidence": [0.9] * 60})
    current = pd.DataFrame({"predicted_label": ["notumor"] * 60, "confidence": [0.9] * 60})
    result = drift_report(reference, current)
    assert result.constant_columns == ["confidence"]
    assert list(result.per_column) == ["predicted_label"]
    assert result.per_column["predicted_label"].drifted
    assert "chi" in result.per_column["predicted_label"].method.lower()


def col(name: str, drifted: bool) -> ColumnDrift:
    return ColumnDrift(name, "ks", 0.05, 0.01 if drifted else 0.5, drifted)


def test_decide_drift_share_boundary_and_critical_columns():
    policy = DriftPolicy(drift_share=0.3, critical_columns=("confidence",))
    three_of_ten = {f"c{i}": col(f"c{i}", i < 3) for i in range(10)}
    two_of_ten = {f"c{i}": col(f"c{i}", i < 2) for i in range(10)}
    assert decide_drift(three_of_ten, policy)[:2] == (True, 0.3)
    drifted, share, reasons = decide_drift(two_of_ten, policy)
    assert (drifted, share) == (False, 0.2)
    assert "c0, c1" in reasons[0]
    with_confidence = {**two_of_ten, "confidence": col("confidence", True)}
    drifted, _, reasons = decide_drift(with_confidence, policy)
    assert drifted and any("critical column confidence" in r for r in reasons)
    assert decide_drift({}, policy) == (False, 0.0, ["no column was tested"])


def test_one_strong_column_is_drift_whatever_the_share():
    policy = DriftPolicy(drift_share=0.3, critical_columns=())
    columns = {f"c{i}": col(f"c{i}", False) for i in range(9)}
    strong = ColumnDrift("width", "ks", 0.05, 1e-9, True)
    drifted, share, reasons = decide_drift({**columns, "width": strong}, policy)
    assert drifted and share == pytest.approx(0.1)
    assert reasons == ["width drifted strongly (ks 1e-09, p < 0.001)"]
    far = ColumnDrift("width", "Wasserstein distance (normed)", 0.1, 0.6, True, "distance")
    near = ColumnDrift("width", "Wasserstein distance (normed)", 0.1, 0.3, True, "distance")
    assert decide_drift({**columns, "width": far}, policy)[0]
    assert not decide_drift({**columns, "width": near}, policy)[0]
    off = DriftPolicy(critical_columns=(), strong_p_value=None, strong_distance_ratio=None)
    assert not decide_drift({**columns, "width": strong}, off)[0]
    assert not decide_drift({**columns, "width": far}, off)[0]


def test_score_kind_is_read_off_the_verdict():
    assert score_kind(0.01, 0.05, True) == "p_value"
    assert score_kind(0.5, 0.05, False) == "p_value"
    assert score_kind(0.3, 0.1, True) == "distance"
    assert score_kind(0.02, 0.1, False) == "distance"


def test_bad_inputs_get_clear_errors():
    small = pd.DataFrame({"intensity_mean": np.arange(5.0)})
    big = pd.DataFrame({"intensity_mean": np.arange(50.0)})
    with pytest.raises(DriftInputError, match=r"current data has 5 rows; .* at least 20"):
        drift_report(big, small)
    with pytest.raises(DriftInputError, match="no feature to compare"):
        drift_report(big, pd.DataFrame({"other": np.arange(50.0)}))
    constant = pd.DataFrame({"intensity_mean": np.ones(50)})
    with pytest.raises(DriftInputError, match="all constant"):
        drift_report(constant, constant)
    with pytest.raises(DriftInputError, match="not in both tables"):
        drift_report(big, big, columns=["sharpness"])
    with pytest.raises(ValueError, match="drift_share"):
        DriftPolicy(drift_share=0)
