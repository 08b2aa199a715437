"""Step: score one trained backbone on the validation split (`evaluate_<backbone>`)."""

from __future__ import annotations

from typing import Annotated

import keras
import pandas as pd
from zenml import log_metadata, step

from braintumor.constants import ARTIFACT_VAL_METRICS, VAL
from braintumor.evaluation.scoring import backbone_scores
from braintumor.training.config import TrainingConfig
from braintumor.training.dataset import label_indices, load_images, select_split
from braintumor_zenml.materializers import ImageFolder


@step(substitutions={"backbone": "backbone"})
def evaluate_backbone(
    model: keras.Model, images: ImageFolder, splits: pd.DataFrame, config: TrainingConfig
) -> Annotated[dict, ARTIFACT_VAL_METRICS]:
    """Validation metrics (weighted F1 with CI, per-class recall...), size and latency."""
    rows = select_split(splits, VAL)
    x = load_images(rows["path"].tolist(), images.path, config.preprocessing)
    y = label_indices(rows["label"].tolist(), config.class_names)
    metrics = backbone_scores(model, x, y, config.class_names, config.backbone)
    log_metadata(
        metadata={
            "val_weighted_f1": metrics["weighted_f1"],
            "val_weighted_f1_ci": metrics["weighted_f1_ci"],
            "latency_ms": metrics["latency_ms"],
            "model_mb": metrics["model_mb"],
        }
    )
    return metrics
