"""Temperature scaling: fitted on validation probabilities, applied by the service."""

from __future__ import annotations

import numpy as np
import pytest

from braintumor.evaluation.calibration import calibrate, fit_temperature, nll


def synthetic(n: int, sharpen: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Scores z with unit Gaussian noise and a shift `s` on the true class: the true
    posterior is softmax(s * z), so softmax(sharpen * s * z) is calibrated at sharpen = 1
    and needs temperature `sharpen` otherwise."""
    rng = np.random.default_rng(seed)
    shift = 1.5
    labels = rng.integers(0, 4, n)
    scores = rng.normal(0, 1, (n, 4))
    scores[np.arange(n), labels] += shift
    logits = sharpen * shift * scores
    probs = np.exp(logits - logits.max(1, keepdims=True))
    return probs / probs.sum(1, keepdims=True), labels


def test_over_confident_model_gets_a_temperature_above_one_and_a_lower_nll():
    probs, labels = synthetic(4000, sharpen=3.0)
    temperature = fit_temperature(probs, labels)
    assert 2.7 < temperature < 3.3  # it undoes the sharpening
    assert nll(calibrate(probs, temperature), labels) < nll(probs, labels)
    held_out, held_labels = synthetic(4000, sharpen=3.0, seed=1)
    assert nll(calibrate(held_out, temperature), held_labels) < nll(held_out, held_labels)


def test_calibrated_model_keeps_a_temperature_near_one():
    probs, labels = synthetic(4000, sharpen=1.0)
    assert 0.9 < fit_temperature(probs, labels) < 1.1


def test_temperature_never_changes_the_predicted_class():
    probs, labels = synthetic(500, sharpen=3.0)
    calibrated = calibrate(probs, fit_temperature(probs, labels))
    assert (calibrated.argmax(1) == probs.argmax(1)).all()


def test_fit_refuses_mismatched_inputs():
    with pytest.raises(ValueError, match="need probs"):
        fit_temperature(np.ones((3, 4)) / 4, np.array([0, 1]))
