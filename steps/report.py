"""Step: the run's HTML report (also shown as a ZenML visualisation)."""

from __future__ import annotations

from typing import Annotated

import keras
import numpy as np
import pandas as pd
from zenml import step
from zenml.types import HTMLString

from braintumor.constants import ARTIFACT_REPORT, TEST
from braintumor.evaluation import plots
from braintumor.reporting import RunReport, build_gallery, figure_png, render_run_report
from braintumor.run_config import ReportConfig
from braintumor.training.config import TrainingConfig
from braintumor.training.dataset import label_indices, load_images, select_split
from braintumor_zenml.materializers import ImageFolder


@step
def report(
    leaderboard: list[dict],
    winner: str,
    trainings: list[dict],
    test_metrics: dict,
    test_predictions: pd.DataFrame,
    best_model: keras.Model,
    promotion_decision: dict,
    audit_summary: dict,
    images: ImageFolder,
    splits: pd.DataFrame,
    config: TrainingConfig,
    settings: ReportConfig,
    data_hash: str,
    git_commit: str,
) -> Annotated[HTMLString, ARTIFACT_REPORT]:
    names = tuple(test_metrics["class_names"])
    y = label_indices(test_predictions["label"].tolist(), names)
    probs = test_predictions[[f"p_{n}" for n in names]].to_numpy(np.float64)
    history = next(t["history"] for t in trainings if t["backbone"] == winner)
    figures = {
        "Confusion matrix (test)": plots.confusion_matrix_figure(
            test_metrics["confusion_matrix"], names
        ),
        "ROC curves, one-vs-rest (test)": plots.roc_figure(y, probs, names),
        "Reliability diagram (test, calibrated)": plots.reliability_figure(y, probs),
        "Training curves": plots.training_curves_figure(history),
    }
    rows = select_split(splits, TEST)
    x = load_images(rows["path"].tolist(), images.path, config.preprocessing)
    gallery = build_gallery(
        best_model,
        x,
        y,
        probs,
        names,
        settings.gradcam_correct_per_class,
        settings.gradcam_wrong_per_class,
    )
    notes = []
    missing = [n for n, v in test_metrics["per_class"].items() if v["support"] == 0]
    if missing:
        notes.append(
            f"The test split has no images of {', '.join(missing)}: their recall is unknown."
        )
    html = render_run_report(
        RunReport(
            title=f"braintumor training run: winner {winner}",
            protocol=test_metrics["protocol"],
            preprocessing=config.preprocessing.variant,
            data_hash=data_hash,
            git_commit=git_commit,
            leaderboard=leaderboard,
            winner=winner,
            test_metrics=test_metrics,
            decision=promotion_decision,
            plots={caption: figure_png(figure) for caption, figure in figures.items()},
            gallery=gallery,
            audit=audit_summary,
            notes=notes,
        )
    )
    return HTMLString(html)
