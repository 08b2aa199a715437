"""Temperature scaling: fitted on over-confident predictions it softens them, and it never
changes the predicted class."""

from __future__ import annotations

import numpy as np

from braintumor.evaluation.calibration import (
    apply_temperature,
    fit_temperature,
    negative_log_likelihood,
)
from braintumor.evaluation.metrics import expected_calibration_error


def _overconfident(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """70% right, but always 99% sure: the classic over-confident network."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    predicted = np.where(rng.random(n) < 0.7, y, (y + rng.integers(1, 4, n)) % 4)
    probs = np.full((n, 4), 0.01 / 3)
    probs[np.arange(n), predicted] = 0.99
    return y, probs


def test_temperature_softens_overconfidence_and_improves_calibration() -> None:
    y, probs = _overconfident()
    t = fit_temperature(y, probs)
    calibrated = apply_temperature(probs, t)
    assert t > 1.5
    assert negative_log_likelihood(y, calibrated) < negative_log_likelihood(y, probs)
    assert expected_calibration_error(y, calibrated) < expected_calibration_error(y, probs) / 3
    assert np.array_equal(calibrated.argmax(axis=1), probs.argmax(axis=1))
    assert np.allclose(calibrated.sum(axis=1), 1.0)


def test_temperature_one_is_the_identity_and_well_calibrated_stays_near_one() -> None:
    _, probs = _overconfident()
    assert np.allclose(apply_temperature(probs, 1.0), probs)
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(4000, 4)) * 2
    honest = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(4, p=p) for p in honest])
    assert 0.85 < fit_temperature(labels, honest) < 1.15
