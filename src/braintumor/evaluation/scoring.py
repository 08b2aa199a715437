"""Scoring trained models on one split: a backbone's validation scores (with its latency and
saved size), the winner's calibrated test scores and its answer on every test image."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from braintumor.constants import TEST, VAL
from braintumor.evaluation.calibration import calibrate
from braintumor.evaluation.metrics import evaluate, evaluate_by_group, expected_calibration_error


def backbone_scores(
    model: Any, x: np.ndarray, y: np.ndarray, class_names: Sequence[str], backbone: str
) -> dict[str, Any]:
    """`evaluate` of `model` on validation images `x` (labels `y`), with the model's median
    latency for one image (ms) and its size saved as `.keras` (MB)."""
    from braintumor.models.inference import latency_ms, predict_proba, saved_size_mb

    metrics = evaluate(y, predict_proba(model, x), class_names)
    metrics.update(
        backbone=backbone,
        split=VAL,
        latency_ms=round(latency_ms(model, x[0]), 2),
        model_mb=round(saved_size_mb(model), 2),
    )
    return metrics


def calibrated_test_scores(
    y: np.ndarray,
    raw_probs: np.ndarray,
    class_names: Sequence[str],
    temperature: float,
    sources: Sequence[str] | None = None,
) -> tuple[dict[str, Any], np.ndarray]:
    """`evaluate` of the test probabilities once calibrated with `temperature` (fitted on
    validation), the ECE they had before, and the figures per source of the images when
    `sources` is given; with the calibrated probabilities."""
    probs = calibrate(raw_probs, temperature)
    metrics = evaluate(y, probs, class_names)
    metrics.update(
        split=TEST,
        temperature=float(temperature),
        ece_uncalibrated=expected_calibration_error(y, raw_probs),
    )
    if sources is not None:
        metrics["by_source"] = evaluate_by_group(y, probs, class_names, sources)
    return metrics, probs


def prediction_table(
    rows: pd.DataFrame, probs: np.ndarray, class_names: Sequence[str]
) -> pd.DataFrame:
    """One row per image of `rows` (path, label, source when known): the predicted class,
    its probability and every class's probability (`p_<class>`)."""
    probs = np.asarray(probs)
    table = pd.DataFrame(
        {
            "path": rows["path"].to_numpy(),
            "label": rows["label"].to_numpy(),  # the data's four classes, for both tasks
            "predicted": np.asarray(class_names)[probs.argmax(axis=1)],
            "confidence": probs.max(axis=1),
        }
    )
    if "source" in rows.columns:
        table["source"] = rows["source"].to_numpy()
    for index, name in enumerate(class_names):
        table[f"p_{name}"] = probs[:, index]
    return table
