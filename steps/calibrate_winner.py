"""Step: the one calibration of the winner, fitted on validation: a temperature, and per-class
logit offsets when `refit_class_bias` is on. The offsets go into `best_model`'s softmax bias;
the temperature travels in `calibration` to the test scores, the guard and the model card."""

from __future__ import annotations

from typing import Annotated

import keras
import pandas as pd
from zenml import log_metadata, step
from zenml.artifacts.artifact_config import ArtifactConfig
from zenml.enums import ArtifactType

from braintumor.constants import ARTIFACT_BEST_MODEL, ARTIFACT_CALIBRATION, VAL
from braintumor.models.calibrated import calibrate_model
from braintumor.training.config import TrainingConfig
from braintumor.training.dataset import DatasetError, label_indices, load_images, select_split
from braintumor_zenml.materializers import ImageFolder


@step
def calibrate_winner(
    winner_model: keras.Model, images: ImageFolder, splits: pd.DataFrame, config: TrainingConfig
) -> tuple[
    Annotated[
        keras.Model, ArtifactConfig(name=ARTIFACT_BEST_MODEL, artifact_type=ArtifactType.MODEL)
    ],
    Annotated[dict, ARTIFACT_CALIBRATION],
]:
    """`best_model` (the model every version is served from) and its calibration."""
    rows = select_split(splits, VAL)
    if rows.empty:
        raise DatasetError("the val split is empty: nothing to calibrate the winner on")
    x = load_images(rows["path"].tolist(), images.path, config.preprocessing)
    y = label_indices(rows["label"].tolist(), config.class_names)
    calibration = calibrate_model(winner_model, x, y, class_offsets=config.refit_class_bias)
    fitted = {**calibration.to_dict(), "val_images": len(rows)}
    log_metadata(metadata={"calibration": fitted})
    return winner_model, fitted
