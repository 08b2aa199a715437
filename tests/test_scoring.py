"""The scoring functions the evaluation steps call, on small synthetic arrays: a backbone's
validation scores, the winner's calibrated test scores, its table of answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from braintumor.evaluation.calibration import calibrate
from braintumor.evaluation.metrics import expected_calibration_error
from braintumor.evaluation.scoring import (
    backbone_scores,
    calibrated_test_scores,
    prediction_table,
)

NAMES = ("a", "b")
Y = np.array([0, 0, 0, 1, 1, 1])
# Right on five of six; the fourth image (class b) is read as a.
RAW = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4], [0.2, 0.8], [0.1, 0.9]])


def test_calibrated_test_scores_are_those_of_the_tempered_probabilities() -> None:
    sources = ["x", "x", "x", "y", "y", "y"]
    metrics, probs = calibrated_test_scores(Y, RAW, NAMES, 2.0, sources)
    np.testing.assert_allclose(probs, calibrate(RAW, 2.0))
    assert probs[0, 0] == pytest.approx(3 / 4)  # sqrt(0.9) / (sqrt(0.9) + sqrt(0.1))
    # a: precision 3/4, recall 1 -> F1 6/7; b: precision 1, recall 2/3 -> F1 4/5.
    assert metrics["weighted_f1"] == pytest.approx((6 / 7 + 4 / 5) / 2)
    assert metrics["temperature"] == 2.0 and metrics["split"] == "test"
    assert metrics["ece_uncalibrated"] == pytest.approx(expected_calibration_error(Y, RAW))
    assert metrics["ece"] == pytest.approx(expected_calibration_error(Y, probs))
    assert metrics["ece"] != pytest.approx(metrics["ece_uncalibrated"])
    assert set(metrics["by_source"]) == {"x", "y"}
    assert metrics["by_source"]["x"]["n"] == 3 and metrics["by_source"]["x"]["accuracy"] == 1.0
    assert metrics["by_source"]["y"]["accuracy"] == pytest.approx(2 / 3)
    assert "by_source" not in calibrated_test_scores(Y, RAW, NAMES, 1.0)[0]


def test_prediction_table_has_one_answer_per_image() -> None:
    rows = pd.DataFrame({"path": [f"{i}.jpg" for i in range(6)], "label": list("aaabbb")})
    table = prediction_table(rows.assign(source="x"), RAW, NAMES)
    assert table["predicted"].tolist() == list("aaaabb")
    np.testing.assert_allclose(table["confidence"], [0.9, 0.8, 0.7, 0.6, 0.8, 0.9])
    np.testing.assert_allclose(table["p_b"], RAW[:, 1])
    assert table["path"].tolist() == rows["path"].tolist() and set(table["source"]) == {"x"}
    assert "source" not in prediction_table(rows, RAW, NAMES).columns


def test_backbone_scores_score_the_model_on_validation_with_its_cost() -> None:
    import keras

    # softmax(x @ W) of two pixels: class a where the first pixel is larger.
    inputs = keras.Input((1, 2, 1))
    flat = keras.layers.Flatten()(inputs)
    outputs = keras.layers.Dense(2, activation="softmax", use_bias=False)(flat)
    model = keras.Model(inputs, outputs)
    model.layers[-1].set_weights([np.array([[4.0, 0.0], [0.0, 4.0]], np.float32)])
    x = RAW[:, None, :, None]  # the pixels lean like RAW
    metrics = backbone_scores(model, x, Y, NAMES, "tiny")
    assert metrics["accuracy"] == pytest.approx(5 / 6)
    assert metrics["weighted_f1"] == pytest.approx((6 / 7 + 4 / 5) / 2)
    assert metrics["backbone"] == "tiny" and metrics["split"] == "val"
    assert metrics["latency_ms"] > 0 and 0 < metrics["model_mb"] < 1
