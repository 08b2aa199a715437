"""Calibrated probabilities: temperature scaling (Guo et al., 2017), and class offsets.

One scalar T, fitted on validation probabilities (`fit_temperature`: the pipeline's
evaluate_winner step, or packaging when a card has none), is stored with the model; the
service applies it to every prediction (`calibrate`), so the probabilities it returns, and
the `needs_review` flag built on them, mean what they say. It never changes the predicted
class. numpy and scipy only: the service imports it.

Per-class logit offsets (`fit_class_bias`; training's `refit_class_bias`) do change it: they
are fitted once after training, on validation, and added to the bias of the model's softmax
layer (`braintumor.models.backbones.shift_class_logits`), so evaluation, export and serving all
see one corrected model; the temperature is then fitted on top of it as before.
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
    return _softmax(_log(probs) / temperature)


def _log(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probs, np.float64), 1e-12, 1.0))


def _softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


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


def fit_class_bias(
    probs: np.ndarray, labels: np.ndarray, *, min_per_class: int = 10
) -> tuple[float, np.ndarray]:
    """Temperature T and per-class logit offsets b that minimise the negative log-likelihood
    of `labels` under softmax(log(p) / T + b) ("vector scaling" with a shared scale); fit them
    on validation data, never on the test set.

    Unlike a temperature alone, b moves the decision boundaries: it undoes a systematic lean
    of the model towards some classes (class weighting trains for equal priors; a network can
    also over-call one of two similar classes). b is returned centred (mean 0): adding a
    constant to every logit changes nothing.

    Raises:
        ValueError: shapes disagree, or a class has fewer than `min_per_class` examples
            (too few to fit its offset without over-fitting).
    """
    from scipy.optimize import minimize

    probs, labels = np.asarray(probs, np.float64), np.asarray(labels)
    if probs.ndim != 2 or len(probs) != len(labels) or len(labels) == 0:
        raise ValueError(f"need probs (N, classes) and N labels, got {probs.shape}, {labels.shape}")
    counts = np.bincount(labels, minlength=probs.shape[1])
    if counts.min() < min_per_class:
        raise ValueError(
            f"every class needs at least {min_per_class} validation examples to fit its logit "
            f"offset; the counts are {counts.tolist()}"
        )
    log_p = _log(probs)

    def loss(params: np.ndarray) -> float:
        return nll(_softmax(log_p / np.exp(params[0]) + np.r_[0.0, params[1:]]), labels)

    result = minimize(loss, np.zeros(probs.shape[1]), method="L-BFGS-B")
    bias = np.r_[0.0, result.x[1:]]
    return float(np.exp(result.x[0])), bias - bias.mean()


def shift_logits(probs: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """softmax(log(p) + shift), row by row: what a model answers once `shift` is added to
    the bias of its softmax layer."""
    return _softmax(_log(probs) + np.asarray(shift))
