"""Evaluation figures: PNG files, labelled axes, colour-blind-safe colours."""

from __future__ import annotations

import numpy as np
from matplotlib.colors import to_hex

from braintumor.evaluation.plots import (
    MATRIX_CMAP,
    OKABE_ITO,
    confusion_matrix_figure,
    reliability_figure,
    roc_figure,
    training_curves_figure,
)

NAMES = ("glioma", "meningioma", "notumor", "pituitary")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def sample() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 80)
    probs = rng.dirichlet(np.ones(4), 80)
    probs[np.arange(80), y] += 1.0
    return y, probs / probs.sum(axis=1, keepdims=True)


def labelled(figure) -> bool:
    return all(
        axis.get_xlabel() and axis.get_ylabel() and axis.get_title() for axis in figure.axes[:1]
    )


def test_every_figure_has_labelled_axes_and_safe_colours() -> None:
    y, probs = sample()
    history = {
        "loss": [1.2, 0.9, 0.7, 0.6],
        "val_loss": [1.1, 0.95, 0.8, 0.82],
        "accuracy": [0.5, 0.6, 0.7, 0.75],
        "val_accuracy": [0.5, 0.55, 0.65, 0.66],
        "phase": ["head", "head", "fine_tune", "fine_tune"],
    }
    matrix = np.array([[10, 2, 0, 1], [1, 9, 0, 0], [0, 0, 5, 0], [0, 1, 0, 12]])
    figures = [
        confusion_matrix_figure(matrix, NAMES),
        roc_figure(y, probs, NAMES),
        training_curves_figure(history),
        reliability_figure(y, probs),
    ]
    for figure in figures:
        assert labelled(figure)
    assert figures[0].axes[0].images[0].get_cmap().name == MATRIX_CMAP
    palette = {c.lower() for c in OKABE_ITO} | {"#999999"}
    for figure in figures[1:]:
        for line in figure.axes[0].get_lines():
            assert to_hex(line.get_color()) in palette
    roc_labels = [line.get_label() for line in figures[1].axes[0].get_lines()]
    assert any(label.startswith("glioma (AUC") for label in roc_labels)


def test_every_figure_renders_as_the_png_the_run_report_embeds() -> None:
    from braintumor.evaluation.metrics import confusion_matrix
    from braintumor.reporting import figure_png

    y, probs = sample()
    history = {"loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "phase": ["train", "train"]}
    figures = [
        confusion_matrix_figure(confusion_matrix(y, probs.argmax(axis=1), 4), NAMES),
        roc_figure(y, probs, NAMES),
        reliability_figure(y, probs),
        training_curves_figure(history),
    ]
    for figure in figures:
        png = figure_png(figure)
        assert png[:8] == PNG_MAGIC and len(png) > 5_000
