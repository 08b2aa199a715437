"""Step: fit the winner's guard (OOD detector, its threshold, conformal sets) on the training
and validation splits, with the temperature calibrate_winner fitted; it travels to packaging."""

from __future__ import annotations

from typing import Annotated, Any

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
from braintumor.run_config import RunConfig
from steps.materializers import ImageFolder


@step
def fit_guard(
    best_model: keras.Model,
    images: ImageFolder,
    splits: pd.DataFrame,
    calibration: dict,
    winner: str,
    run: dict[str, Any],
    clahe: dict[str, Any],
) -> tuple[
    Annotated[dict, ARTIFACT_GUARD],
    Annotated[OodDetector, ARTIFACT_OOD_DETECTOR],
    Annotated[pd.DataFrame, ARTIFACT_ANSWER_REFERENCE],
]:
    """The guard of `best_model`; never reads the test split."""
    run_config = RunConfig(**run)
    config = run_config.guard
    training = run_config.training_config(winner, clahe)
    fitted = fit_model_guard(
        best_model,
        images.path,
        splits,
        training.preprocess_spec(),
        temperature=float(calibration["temperature"]),
        class_names=training.class_names,
        review_threshold=config.review_threshold,
        settings=config.settings(),
    )
    card = fitted.card.model_dump(mode="json")
    log_metadata(metadata={"guard": card}, infer_model=True)
    return card, fitted.detector, fitted.answer_reference
