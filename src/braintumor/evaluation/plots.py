"""Evaluation figures as PNG: confusion matrix, ROC curves, training curves, reliability.

Every figure has labelled axes and a title. Colours are colour-blind safe: lines use the
Okabe-Ito palette (distinguishable with every common colour-vision deficiency) with distinct
line styles as a second cue, and matrices use viridis. Each `*_figure` function returns a
Matplotlib figure; the run report embeds it as PNG (`braintumor.reporting.figure_png`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display needed; must precede pyplot

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

# Okabe & Ito (2008), "Color Universal Design".
OKABE_ITO: tuple[str, ...] = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#D55E00",  # vermillion
    "#F0E442",  # yellow
    "#000000",  # black
)
LINE_STYLES: tuple[str, ...] = ("-", "--", "-.", ":")
MATRIX_CMAP = "viridis"


def confusion_matrix_figure(
    matrix: Sequence[Sequence[int]] | np.ndarray,
    class_names: Sequence[str],
    *,
    normalize: bool = True,
    title: str = "Confusion matrix",
) -> Figure:
    """Rows are true classes, columns predictions; cells show counts (and row share)."""
    counts = np.asarray(matrix, dtype=np.float64)
    rows = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    shown = shares if normalize else counts
    figure, axis = plt.subplots(figsize=(1.3 * len(class_names) + 2.5, 1.1 * len(class_names) + 2))
    image = axis.imshow(shown, cmap=MATRIX_CMAP, vmin=0, vmax=1 if normalize else None)
    colorbar = figure.colorbar(image, ax=axis)
    colorbar.set_label("share of the true class" if normalize else "images")
    ticks = np.arange(len(class_names))
    axis.set_xticks(ticks, labels=class_names, rotation=30, ha="right")
    axis.set_yticks(ticks, labels=class_names)
    axis.set_xlabel("Predicted class")
    axis.set_ylabel("True class")
    axis.set_title(title)
    threshold = (shown.max() if shown.size else 0) / 2
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            text = f"{int(counts[i, j])}" + (f"\n{shares[i, j]:.0%}" if normalize else "")
            colour = "black" if shown[i, j] > threshold else "white"
            axis.text(j, i, text, ha="center", va="center", color=colour, fontsize=9)
    figure.tight_layout()
    return figure


def roc_figure(
    y_true: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    *,
    title: str = "ROC curves (one vs rest)",
) -> Figure:
    from sklearn.metrics import roc_auc_score, roc_curve

    y_true = np.asarray(y_true)
    figure, axis = plt.subplots(figsize=(6, 5))
    for index, name in enumerate(class_names):
        positive = y_true == index
        if positive.all() or not positive.any():
            continue  # undefined for a class that is absent or alone
        fpr, tpr, _ = roc_curve(positive, probs[:, index])
        auc = roc_auc_score(positive, probs[:, index])
        axis.plot(
            fpr,
            tpr,
            color=OKABE_ITO[index % len(OKABE_ITO)],
            linestyle=LINE_STYLES[index % len(LINE_STYLES)],
            linewidth=2,
            label=f"{name} (AUC {auc:.3f})",
        )
    axis.plot([0, 1], [0, 1], color="#999999", linestyle=":", linewidth=1, label="chance")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.02)
    axis.set_xlabel("False positive rate")
    axis.set_ylabel("True positive rate (recall)")
    axis.set_title(title)
    axis.legend(loc="lower right")
    figure.tight_layout()
    return figure


def training_curves_figure(
    history: Mapping[str, Sequence[Any]], *, title: str = "Training"
) -> Figure:
    """Loss and accuracy per epoch for training and validation; fine-tuning is shaded."""
    metrics = [m for m in ("loss", "accuracy") if m in history]
    figure, axes = plt.subplots(1, max(1, len(metrics)), figsize=(5.5 * max(1, len(metrics)), 4))
    axes = np.atleast_1d(axes)
    phases = list(history.get("phase", []))
    for axis, metric in zip(axes, metrics, strict=False):
        epochs = np.arange(1, len(history[metric]) + 1)
        axis.plot(epochs, history[metric], color=OKABE_ITO[0], linestyle="-", marker="o",
                  markersize=3, label=f"train {metric}")  # fmt: skip
        if f"val_{metric}" in history:
            axis.plot(epochs, history[f"val_{metric}"], color=OKABE_ITO[1], linestyle="--",
                      marker="s", markersize=3, label=f"validation {metric}")  # fmt: skip
        if "fine_tune" in phases:
            start = phases.index("fine_tune") + 0.5
            axis.axvspan(
                start, len(phases) + 0.5, color=OKABE_ITO[4], alpha=0.15, label="fine-tuning"
            )
        axis.set_xlabel("Epoch")
        axis.set_ylabel(metric.capitalize())
        axis.set_title(f"{title}: {metric}")
        axis.legend()
    figure.tight_layout()
    return figure


def reliability_figure(
    y_true: np.ndarray, probs: np.ndarray, *, n_bins: int = 15, title: str = "Reliability diagram"
) -> Figure:
    """Accuracy against confidence per bin; the diagonal is perfect calibration."""
    from braintumor.evaluation.metrics import expected_calibration_error, reliability_table

    table = reliability_table(y_true, probs, n_bins)
    edges = table["edges"]
    centres = (edges[:-1] + edges[1:]) / 2
    filled = table["count"] > 0
    figure, axis = plt.subplots(figsize=(5.5, 5))
    axis.bar(centres[filled], table["accuracy"][filled], width=1.0 / n_bins, color=OKABE_ITO[0],
             edgecolor="white", label="accuracy in bin")  # fmt: skip
    axis.plot([0, 1], [0, 1], color=OKABE_ITO[5], linestyle="--", label="perfect calibration")
    ece = expected_calibration_error(y_true, probs, n_bins)
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.set_xlabel("Confidence (highest predicted probability)")
    axis.set_ylabel("Accuracy")
    axis.set_title(f"{title} (ECE {ece:.3f})")
    axis.legend(loc="upper left")
    figure.tight_layout()
    return figure
