"""Step: the winner on the test split, with the probabilities it is served with (calibrated
on validation by calibrate_winner)."""

from __future__ import annotations

from typing import Annotated

import keras
import pandas as pd
from zenml import log_metadata, step

from braintumor.constants import ARTIFACT_TEST_METRICS, ARTIFACT_TEST_PREDICTIONS, TEST
from braintumor.evaluation.scoring import calibrated_test_scores, prediction_table
from braintumor.models.inference import predict_proba
from braintumor.training.config import TrainingConfig
from braintumor.training.dataset import DatasetError, label_indices, load_images, select_split
from braintumor_zenml.materializers import ImageFolder


@step
def evaluate_winner(
    best_model: keras.Model,
    calibration: dict,
    images: ImageFolder,
    splits: pd.DataFrame,
    config: TrainingConfig,
) -> tuple[
    Annotated[dict, ARTIFACT_TEST_METRICS],
    Annotated[pd.DataFrame, ARTIFACT_TEST_PREDICTIONS],
]:
    """Test metrics of `best_model`; the metadata the model card is written from."""
    winner, spec, names = config.backbone, config.preprocessing, config.class_names
    rows = select_split(splits, TEST)
    if rows.empty:
        raise DatasetError("the test split is empty: nothing to evaluate the winner on")
    x = load_images(rows["path"].tolist(), images.path, spec)
    y = label_indices(rows["label"].tolist(), names)
    sources = rows["source"] if "source" in rows.columns else None
    temperature = float(calibration["temperature"])
    metrics, probs = calibrated_test_scores(
        y, predict_proba(best_model, x), names, temperature, sources
    )
    metrics.update(backbone=winner, task=config.task, protocol=str(splits["protocol"].iloc[0]))
    offsets = calibration["class_offsets"]  # already in best_model's softmax bias
    log_metadata(
        metadata={
            **({} if offsets is None else {"class_offsets": offsets}),
            "backbone": winner,
            "task": config.task,
            "class_names": list(names),
            "test_weighted_f1": metrics["weighted_f1"],
            "test_weighted_f1_ci": metrics["weighted_f1_ci"],
            "test_class_recall": {n: v["recall"] for n, v in metrics["per_class"].items()},
            "test_by_source": {
                source: {"weighted_f1": figures["weighted_f1"], "images": figures["n"]}
                for source, figures in (metrics.get("by_source") or {}).items()
            },
            "test_tumour_vs_none": {  # None where the test split lacks one side
                k: v for k, v in metrics["tumour_vs_none"].items() if v is not None
            },
            "temperature": temperature,
            "preprocessing": spec.to_dict(),
            "protocol": metrics["protocol"],
            "training_config": config.model_dump(mode="json"),
        },
        infer_model=True,
    )
    return metrics, prediction_table(rows, probs, names)
