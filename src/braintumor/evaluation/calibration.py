"""Temperature scaling: one scalar T fitted on validation data so that the served
probabilities are calibrated (Guo et al., 2017). It never changes the predicted class.

`apply_temperature` is what the service runs on every prediction; `fit_temperature` is what the
pipeline runs once on the winner's validation predictions.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

# T is searched in [exp(-3), exp(3)]: from sharpening to strong softening.
_LOG_T_BOUNDS = (-3.0, 3.0)


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log(p) / T), row by row (the same as dividing the logits by T)."""
    probs = np.asarray(probs, dtype=np.float64)
    if temperature == 1.0:
        return probs / probs.sum(axis=-1, keepdims=True)
    logits = np.log(np.clip(probs, 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    scaled = np.exp(logits)
    return scaled / scaled.sum(axis=-1, keepdims=True)


def negative_log_likelihood(y_true: np.ndarray, probs: np.ndarray) -> float:
    picked = np.asarray(probs, dtype=np.float64)[np.arange(len(y_true)), np.asarray(y_true)]
    return float(-np.mean(np.log(np.clip(picked, 1e-12, 1.0))))


def fit_temperature(y_true: np.ndarray, probs: np.ndarray) -> float:
    """The T > 0 that minimises the negative log-likelihood of `probs` on `y_true`."""
    y_true = np.asarray(y_true, dtype=np.int64)
    if len(y_true) == 0:
        raise ValueError("cannot fit a temperature on zero images")

    def loss(log_t: float) -> float:
        return negative_log_likelihood(y_true, apply_temperature(probs, float(np.exp(log_t))))

    result = minimize_scalar(loss, bounds=_LOG_T_BOUNDS, method="bounded")
    return float(np.exp(result.x))
