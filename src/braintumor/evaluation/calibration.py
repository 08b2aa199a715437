"""Calibrated probabilities: temperature scaling (Guo et al., 2017), and class offsets.

A model is calibrated once, on validation, after training (`fit_calibration`; the pipeline's
calibrate step, through `braintumor.models.calibrated.calibrate_model`): a temperature T
(`fit_temperature`), or, with `refit_class_bias`, T together with per-class logit offsets b
(`fit_class_bias`). The served probabilities are softmax(log(p) / T + b) of the trained
model's p. T never changes the predicted class, b does: it undoes a systematic lean towards
some classes.

b goes into the model's weights (T·b added to the softmax bias), so evaluation, export,
Grad-CAM and serving all see one corrected model; T travels in the model card and the
serving graph divides the logits by it (`calibrate`, here for NumPy). numpy and scipy only:
the service imports it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Calibration:
    """The one calibration of a model, fitted on validation.

    Attributes:
        temperature: T; the served probabilities are the model's logits divided by it.
        class_offsets: b, one per class (mean 0), fitted with T; None when only T was fitted.
    """

    temperature: float = 1.0
    class_offsets: tuple[float, ...] | None = None

    @property
    def logit_shift(self) -> np.ndarray | None:
        """T·b: what goes into the softmax bias so that softmax(logits / T) of the shifted
        model is softmax(log(p) / T + b) of the trained one."""
        if self.class_offsets is None:
            return None
        return self.temperature * np.asarray(self.class_offsets, np.float64)

    def apply(self, probs: np.ndarray) -> np.ndarray:
        """softmax(log(p) / T + b) of the trained (unshifted) model's probabilities."""
        if self.class_offsets is None:
            return calibrate(probs, self.temperature)
        return _softmax(_log(probs) / self.temperature + np.asarray(self.class_offsets))

    def to_dict(self) -> dict:
        offsets = None if self.class_offsets is None else list(self.class_offsets)
        return {"temperature": self.temperature, "class_offsets": offsets}


def fit_calibration(
    probs: np.ndarray, labels: np.ndarray, class_offsets: bool, min_per_class: int = 10
) -> Calibration:
    """The calibration of a model from its validation probabilities: T and b jointly
    (`fit_class_bias`) when `class_offsets`, else T alone (`fit_temperature`). A class with
    fewer than `min_per_class` images gets T alone, with a warning."""
    if class_offsets:
        try:
            temperature, bias = fit_class_bias(probs, labels, min_per_class=min_per_class)
        except ValueError as error:  # too few images of a class (bad shapes raise below)
            log.warning("class offsets not fitted, temperature only: %s", error)
        else:
            return Calibration(temperature, tuple(float(v) for v in bias))
    return Calibration(fit_temperature(probs, labels))


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
