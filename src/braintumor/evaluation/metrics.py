"""Classification metrics for one test set, their uncertainty, and paired model comparisons.

Weighted F1 is the headline (as in the research); `evaluate` adds macro F1, accuracy,
balanced accuracy, per-class precision/recall/F1, the confusion matrix, one-vs-rest ROC AUC,
the expected calibration error, a percentile-bootstrap 95% CI for weighted F1, and tumour vs
no tumour sensitivity and specificity (for four-class and binary models alike).
For the promotion gate, `paired_bootstrap_delta` and `mcnemar` compare two models on the same
images. Metrics are computed from confusion matrices with NumPy (fast enough to bootstrap
thousands of times); tests check them against scikit-learn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from braintumor.constants import NO_TUMOUR
from braintumor.tasks import tumour_probability

Metric = Callable[[np.ndarray, np.ndarray], float]


class MetricsError(ValueError):
    """Labels and probabilities that do not fit together."""


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows: true class; columns: predicted class."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    flat = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def _per_class(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """precision, recall, f1, support per class; 0 where undefined (scikit-learn's default)."""
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denominator = precision + recall
    f1 = np.divide(
        2 * precision * recall, denominator, out=np.zeros_like(tp), where=denominator > 0
    )
    return precision, recall, f1, support


def _num_classes(*arrays: np.ndarray) -> int:
    return int(max(int(np.max(a)) for a in arrays if len(a)) + 1)


def weighted_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int | None = None) -> float:
    """F1 per class averaged with weights = class support (scikit-learn `average="weighted"`)."""
    k = num_classes or _num_classes(y_true, y_pred)
    _, _, f1, support = _per_class(confusion_matrix(y_true, y_pred, k))
    return float((f1 * support).sum() / support.sum()) if support.sum() else 0.0


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int | None = None) -> float:
    """Unweighted mean F1 over the classes present in `y_true` or `y_pred`."""
    k = num_classes or _num_classes(y_true, y_pred)
    cm = confusion_matrix(y_true, y_pred, k)
    _, _, f1, _ = _per_class(cm)
    present = (cm.sum(axis=0) + cm.sum(axis=1)) > 0
    return float(f1[present].mean()) if present.any() else 0.0


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred))) if len(y_true) else 0.0


def balanced_accuracy(
    y_true: np.ndarray, y_pred: np.ndarray, num_classes: int | None = None
) -> float:
    """Mean recall over the classes present in `y_true`."""
    k = num_classes or _num_classes(y_true, y_pred)
    cm = confusion_matrix(y_true, y_pred, k)
    _, recall, _, support = _per_class(cm)
    return float(recall[support > 0].mean()) if (support > 0).any() else 0.0


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> float:
    """Sum over equal-width confidence bins of |accuracy - confidence| x share of images."""
    table = reliability_table(y_true, probs, n_bins)
    counts = table["count"]
    total = counts.sum()
    if total == 0:
        return 0.0
    gap = np.abs(table["accuracy"] - table["confidence"])
    return float(np.nansum(gap * counts) / total)


def reliability_table(
    y_true: np.ndarray, probs: np.ndarray, n_bins: int = 15
) -> dict[str, np.ndarray]:
    """Per confidence bin: edges, mean confidence, accuracy (NaN when empty), count."""
    probs = np.asarray(probs, dtype=np.float64)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(y_true)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Bins are (lo, hi]; a confidence of exactly 0 joins the first bin.
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    counts = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(index, weights=confidence, minlength=n_bins) / counts
        acc = np.bincount(index, weights=correct.astype(np.float64), minlength=n_bins) / counts
    return {"edges": edges, "confidence": conf, "accuracy": acc, "count": counts}


def roc_auc_ovr(y_true: np.ndarray, probs: np.ndarray) -> list[float | None]:
    """One-vs-rest ROC AUC per class; None for a class absent from (or alone in) `y_true`."""
    from sklearn.metrics import roc_auc_score

    y_true = np.asarray(y_true)
    aucs: list[float | None] = []
    for label in range(probs.shape[1]):
        positive = y_true == label
        if positive.all() or not positive.any():
            aucs.append(None)
        else:
            aucs.append(float(roc_auc_score(positive, probs[:, label])))
    return aucs


def check_inputs(
    y_true: Any, probs: Any, num_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise MetricsError(f"probabilities must be (n, classes), got shape {p.shape}")
    if y.ndim != 1 or len(y) != len(p):
        raise MetricsError(f"{len(y)} labels for {len(p)} rows of probabilities")
    if len(y) == 0:
        raise MetricsError("cannot evaluate zero images")
    if num_classes is not None and p.shape[1] != num_classes:
        raise MetricsError(f"{p.shape[1]} probability columns for {num_classes} class names")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= p.shape[1]:
        raise MetricsError(f"labels must be integers in [0, {p.shape[1] - 1}]")
    if not np.isfinite(p).all():
        raise MetricsError("probabilities contain NaN or inf")
    return y.astype(np.int64), p


def bootstrap_ci(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    metric: Metric = weighted_f1,
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `metric(y_true, y_pred)` over resampled images."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    rng = np.random.default_rng(seed)
    n = len(y_true)
    values = np.empty(n_boot)
    for b in range(n_boot):
        sample = rng.integers(0, n, n)
        values[b] = metric(y_true[sample], y_pred[sample])
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


class PairedDelta(NamedTuple):
    """metric(A) - metric(B) on the same images, its bootstrap CI and two-sided p-value."""

    delta: float
    ci: tuple[float, float]
    p_value: float


def paired_bootstrap_delta(
    y_true: np.ndarray,
    probs_a: np.ndarray,
    probs_b: np.ndarray,
    metric: Metric = weighted_f1,
    *,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedDelta:
    """How much model A beats model B on the same test images.

    Each bootstrap resample draws images (with replacement) and scores both models on the
    *same* draw, so the image-to-image difficulty cancels. The p-value is two-sided: twice the
    share of resampled deltas on the far side of zero (capped at 1); it tests "no difference".
    """
    y, pa = check_inputs(y_true, probs_a)
    _, pb = check_inputs(y_true, probs_b, pa.shape[1])
    pred_a, pred_b = pa.argmax(axis=1), pb.argmax(axis=1)
    delta = metric(y, pred_a) - metric(y, pred_b)
    rng = np.random.default_rng(seed)
    n = len(y)
    deltas = np.empty(n_boot)
    for b in range(n_boot):
        s = rng.integers(0, n, n)
        deltas[b] = metric(y[s], pred_a[s]) - metric(y[s], pred_b[s])
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(deltas, [tail, 100.0 - tail])
    p_value = min(1.0, 2.0 * min(np.mean(deltas <= 0.0), np.mean(deltas >= 0.0)))
    return PairedDelta(float(delta), (float(low), float(high)), float(p_value))


class McNemar(NamedTuple):
    """McNemar's test on the images where exactly one of two models is right."""

    statistic: float
    p_value: float
    only_a_correct: int
    only_b_correct: int
    exact: bool


def mcnemar(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> McNemar:
    """Exact binomial test when fewer than 25 discordant images, else chi-square with
    continuity correction (Edwards). Predictions are class indices."""
    from scipy import stats

    y = np.asarray(y_true)
    right_a, right_b = np.asarray(pred_a) == y, np.asarray(pred_b) == y
    b = int(np.sum(right_a & ~right_b))
    c = int(np.sum(~right_a & right_b))
    if b + c == 0:
        return McNemar(0.0, 1.0, b, c, True)
    if b + c < 25:
        p = stats.binomtest(b, b + c, 0.5, alternative="two-sided").pvalue
        return McNemar(float(min(b, c)), float(p), b, c, True)
    statistic = (abs(b - c) - 1.0) ** 2 / (b + c)
    return McNemar(float(statistic), float(stats.chi2.sf(statistic, 1)), b, c, False)


def tumour_vs_none(
    y_true: np.ndarray, probs: np.ndarray, class_names: Sequence[str]
) -> dict[str, Any] | None:
    """The binary view of any model: tumour (any class but `notumor`) vs no tumour.

    An image is called a tumour when its tumour probability, 1 - P(notumor) (what the service
    answers as `tumour_probability`), is above 0.5; for a binary model that is its label.
    Sensitivity: share of tumour images called tumour; specificity: share of no-tumour images
    called no tumour (None without such images). None when the classes have no `notumor`.
    """
    if NO_TUMOUR not in class_names:
        return None
    y, p = check_inputs(y_true, probs, len(class_names))
    tumour = y != list(class_names).index(NO_TUMOUR)
    score = tumour_probability(p, class_names)
    called = score > 0.5
    auc = None
    if tumour.any() and not tumour.all():
        from sklearn.metrics import roc_auc_score

        auc = float(roc_auc_score(tumour, score))
    return {
        "sensitivity": float(called[tumour].mean()) if tumour.any() else None,
        "specificity": float((~called[~tumour]).mean()) if (~tumour).any() else None,
        "tumour_images": int(tumour.sum()),
        "notumor_images": int((~tumour).sum()),
        "roc_auc": auc,
        "threshold": 0.5,
    }


def evaluate(
    y_true: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    *,
    n_boot: int = 1000,
    ece_bins: int = 15,
    seed: int = 0,
) -> dict[str, Any]:
    """Every figure of one model on one labelled set, as plain JSON-ready values.

    Keys: n, weighted_f1, weighted_f1_ci (95% bootstrap), macro_f1, accuracy,
    balanced_accuracy, per_class {name: precision, recall, f1, support, roc_auc},
    confusion_matrix (rows true, columns predicted), roc_auc_macro (over classes present),
    ece, class_names, tumour_vs_none (`tumour_vs_none`: sensitivity and specificity of tumour
    vs no tumour, for a four-class model its binary view).
    """
    k = len(class_names)
    y, p = check_inputs(y_true, probs, k)
    pred = p.argmax(axis=1)
    cm = confusion_matrix(y, pred, k)
    precision, recall, f1, support = _per_class(cm)
    aucs = roc_auc_ovr(y, p)
    present = [a for a in aucs if a is not None]

    def wf1(t: np.ndarray, q: np.ndarray) -> float:
        return weighted_f1(t, q, k)

    low, high = bootstrap_ci(y, pred, wf1, n_boot=n_boot, seed=seed)
    return {
        "n": len(y),
        "class_names": list(class_names),
        "weighted_f1": weighted_f1(y, pred, k),
        "weighted_f1_ci": [low, high],
        "macro_f1": macro_f1(y, pred, k),
        "accuracy": accuracy(y, pred),
        "balanced_accuracy": balanced_accuracy(y, pred, k),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
                "roc_auc": aucs[i],
            }
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": cm.tolist(),
        "roc_auc_macro": float(np.mean(present)) if present else None,
        "ece": expected_calibration_error(y, p, ece_bins),
        "tumour_vs_none": tumour_vs_none(y, p, class_names),
    }


def evaluate_by_group(
    y_true: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    groups: Sequence[str] | np.ndarray,
    **options: Any,
) -> dict[str, dict[str, Any]]:
    """`evaluate` on the images of each group (e.g. each source), keyed by group name in
    sorted order; reported next to the pooled figures, never instead of them."""
    y, p = check_inputs(y_true, probs, len(class_names))
    names = np.asarray(groups).astype(str)
    if len(names) != len(y):
        raise MetricsError(f"{len(names)} group names for {len(y)} images")
    return {
        str(name): evaluate(y[names == name], p[names == name], class_names, **options)
        for name in sorted(set(names))
    }
