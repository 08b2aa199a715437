"""Calibrated probabilities: temperature scaling (Guo et al., 2017).

One scalar T, fitted on validation probabilities (`fit_temperature`: the pipeline's
evaluate_winner step, or packaging when a card has none), is stored with the model; the
service applies it to every prediction (`calibrate`), so the probabilities it returns, and
the `needs_review` flag built on them, mean what they say. It never changes the predicted
class. numpy and scipy only: the service imports it.
"""

from __future__ import annotations

import numpy as np


def calibrate(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Temperature scaling of probabilities: softmax(log(p) / T), row by row.

    Equivalent to dividing the model's logits by T (log-softmax differs from the logits by a
    per-row constant). T > 1 softens over-confident outputs; T = 1 returns `probs` unchanged.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if temperature == 1.0:
        return probs / probs.sum(axis=-1, keepdims=True)
    logits = np.log(np.clip(probs, 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    scaled = np.exp(logits)
    return scaled / scaled.sum(axis=-1, keepdims=True)


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true classes."""
    picked = np.asarray(probs, np.float64)[np.arange(len(labels)), np.asarray(labels)]
    return float(-np.mean(np.log(np.clip(picked, 1e-12, 1.0))))


def fit_temperature(
    probs: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0)
) -> float:
    """The temperature that minimises the negative log-likelihood of `labels` under
    `calibrate(probs, T)`; fit it on validation data, never on the test set.

    Args:
        probs: The model's softmax outputs (N, classes) on validation images.
        labels: Their true class indices (N,).
        bounds: Search interval for T.
    """
    from scipy.optimize import minimize_scalar

    probs, labels = np.asarray(probs, np.float64), np.asarray(labels)
    if probs.ndim != 2 or len(probs) != len(labels) or len(labels) == 0:
        raise ValueError(f"need probs (N, classes) and N labels, got {probs.shape}, {labels.shape}")
    result = minimize_scalar(
        lambda t: nll(calibrate(probs, t), labels), bounds=bounds, method="bounded"
    )
    return float(result.x)
