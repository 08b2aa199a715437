"""Class-conditional split-conformal prediction sets (Mondrian conformal classification).

Calibrated with crepes (`ConformalClassifier`, Mondrian categories = the true class) on the
validation split's served probabilities, with the hinge non-conformity score 1 - p(class).
A class is in an image's set when its p-value is at least the error rate; for each class
that is the same as 1 - p(class) <= a threshold, so `fit_thresholds` asks crepes for the
threshold of each class (the largest calibration score it still includes) and serving
applies it with NumPy (`prediction_sets`); a test checks both give the same sets. Coverage:
the true class is in the set for at least 1 - error_rate of the images of each class.
"""

from __future__ import annotations

import numpy as np


def nonconformity(probs: np.ndarray) -> np.ndarray:
    """crepes' hinge score: 1 - the probability of each class."""
    return 1.0 - np.asarray(probs, dtype=np.float64)


def crepes_sets(
    cal_probs: np.ndarray, cal_labels: np.ndarray, probs: np.ndarray, error_rate: float
) -> np.ndarray:
    """Prediction sets (N, classes) of 0/1 from crepes, class-conditional, unsmoothed."""
    from crepes import ConformalClassifier

    cal_labels = np.asarray(cal_labels)
    cal_scores = nonconformity(cal_probs)[np.arange(len(cal_labels)), cal_labels]
    classifier = ConformalClassifier().fit(cal_scores, bins=cal_labels)
    scores = nonconformity(probs)
    columns = [
        classifier.predict_set(
            scores, bins=np.full(len(scores), c), confidence=1.0 - error_rate, smoothing=False
        )[:, c]
        for c in range(scores.shape[1])
    ]
    return np.stack(columns, axis=1)


def fit_thresholds(cal_probs: np.ndarray, cal_labels: np.ndarray, error_rate: float) -> np.ndarray:
    """Per class, the largest non-conformity score (1 - p) that crepes keeps in the set.

    crepes' inclusion only changes at calibration scores, so asking it about each class's
    own calibration scores (and 1.0) finds the exact threshold. A class without calibration
    images gets 1.0: always in the set, since nothing vouches for leaving it out.
    """
    cal_probs, cal_labels = np.asarray(cal_probs, np.float64), np.asarray(cal_labels)
    if not 0.0 < error_rate < 1.0:
        raise ValueError(f"error rate must be in (0, 1), not {error_rate}")
    n_classes = cal_probs.shape[1]
    cal_scores = nonconformity(cal_probs)[np.arange(len(cal_labels)), cal_labels]
    thresholds = np.full(n_classes, 1.0)
    for c in sorted(set(cal_labels.tolist())):
        candidates = np.unique(np.r_[cal_scores[cal_labels == c], 1.0])
        probe = np.zeros((len(candidates), n_classes))
        probe[:, c] = 1.0 - candidates
        kept = crepes_sets(cal_probs, cal_labels, probe, error_rate)[:, c].astype(bool)
        thresholds[c] = float(candidates[kept].max()) if kept.any() else -1.0
    return thresholds


def prediction_sets(probs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Boolean (N, classes): class c is in the set when 1 - p_c <= thresholds[c]."""
    return nonconformity(probs) <= np.asarray(thresholds)[None, :]
