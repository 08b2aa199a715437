"""Step: the winner on the test split, with probabilities calibrated on validation."""

from __future__ import annotations

from typing import Annotated, Any

import keras
import pandas as pd
from zenml import log_metadata, step
from zenml.artifacts.artifact_config import ArtifactConfig
from zenml.enums import ArtifactType

from braintumor.constants import (
    ARTIFACT_BEST_MODEL,
    ARTIFACT_TEST_METRICS,
    ARTIFACT_TEST_PREDICTIONS,
    TEST,
    VAL,
)
from braintumor.evaluation.calibration import fit_temperature
from braintumor.evaluation.scoring import calibrated_test_scores, prediction_table
from braintumor.models.inference import predict_proba
from braintumor.run_config import RunConfig
from braintumor.training.dataset import DatasetError, label_indices, load_images, select_split
from steps.materializers import ImageFolder


def _split_probs(model, images: ImageFolder, splits, name: str, spec, class_names) -> tuple:
    rows = select_split(splits, name)
    if rows.empty:
        raise DatasetError(f"the {name} split is empty: nothing to evaluate the winner on")
    x = load_images(rows["path"].tolist(), images.path, spec)
    return rows, label_indices(rows["label"].tolist(), class_names), predict_proba(model, x)


@step
def evaluate_winner(
    winner_model: keras.Model,
    winner: str,
    images: ImageFolder,
    splits: pd.DataFrame,
    run: dict[str, Any],
    clahe: dict[str, Any],
) -> tuple[
    Annotated[
        keras.Model, ArtifactConfig(name=ARTIFACT_BEST_MODEL, artifact_type=ArtifactType.MODEL)
    ],
    Annotated[dict, ARTIFACT_TEST_METRICS],
    Annotated[pd.DataFrame, ARTIFACT_TEST_PREDICTIONS],
]:
    """Test metrics of the winner; `best_model` is the model every version is served from."""
    config = RunConfig(**run).training_config(winner, clahe)
    spec, names = config.preprocess_spec(), config.class_names
    _, y_val, val_probs = _split_probs(winner_model, images, splits, VAL, spec, names)
    temperature = fit_temperature(val_probs, y_val)
    rows, y, raw = _split_probs(winner_model, images, splits, TEST, spec, names)
    sources = rows["source"] if "source" in rows.columns else None
    metrics, probs = calibrated_test_scores(y, raw, names, temperature, sources)
    metrics.update(backbone=winner, task=config.task, protocol=str(splits["protocol"].iloc[0]))
    log_metadata(
        metadata={
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
    return winner_model, metrics, prediction_table(rows, probs, names)
