"""Step: fit the winner's guard (OOD detector, its threshold, conformal sets) on the training
and validation splits, with the temperature calibrate_winner fitted; it travels to packaging."""

from __future__ import annotations

from typing import Annotated

import keras
import pandas as pd
from zenml import log_metadata, step

from braintumor.constants import (
    ARTIFACT_ANSWER_REFERENCE,
    ARTIFACT_GUARD,
    ARTIFACT_OOD_DETECTOR,
)
from braintumor.guard.fit import fit_model_guard
from braintumor.guard.ood import OodDetector
from braintumor.run_config import GuardConfig
from braintumor.training.config import TrainingConfig
from braintumor_zenml.materializers import ImageFolder


@step
def fit_guard(
    best_model: keras.Model,
    images: ImageFolder,
    splits: pd.DataFrame,
    calibration: dict,
    config: TrainingConfig,
    settings: GuardConfig,
) -> tuple[
    Annotated[dict, ARTIFACT_GUARD],
    Annotated[OodDetector, ARTIFACT_OOD_DETECTOR],
    Annotated[pd.DataFrame, ARTIFACT_ANSWER_REFERENCE],
]:
    """The guard of `best_model`; never reads the test split."""
    fitted = fit_model_guard(
        best_model,
        images.path,
        splits,
        config.preprocessing,
        temperature=float(calibration["temperature"]),
        class_names=config.class_names,
        review_threshold=settings.review_threshold,
        settings=settings.settings(),
    )
    card = fitted.card.model_dump(mode="json")
    log_metadata(metadata={"guard": card}, infer_model=True)
    return card, fitted.detector, fitted.answer_reference
