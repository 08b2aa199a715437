"""Calibrating a trained classifier once, on validation images, after training."""

from __future__ import annotations

from typing import Any

import numpy as np

from braintumor.evaluation.calibration import Calibration, fit_calibration
from braintumor.models.inference import predict_proba


def calibrate_model(
    model: Any, x: np.ndarray, y: np.ndarray, class_offsets: bool, min_per_class: int = 10
) -> Calibration:
    """Fit the calibration of `model` on validation images `x` (labels `y`):
    `fit_calibration` of its probabilities, with per-class offsets b when `class_offsets`.
    T·b is added to the model's softmax bias, in place, so that softmax(logits / T) of the
    returned model is the calibrated answer; T itself goes into the model card (the serving
    graph divides the logits by it)."""
    from braintumor.models.backbones import shift_class_logits

    calibration = fit_calibration(predict_proba(model, x), y, class_offsets, min_per_class)
    if calibration.logit_shift is not None:
        shift_class_logits(model, calibration.logit_shift)
    return calibration
