"""Step: train on one fold's other folds and score its held-out images (`cv_<scheme>_<k>`)."""

from __future__ import annotations

from typing import Annotated

import pandas as pd
from zenml import log_metadata, step

from braintumor.constants import ARTIFACT_CV_FOLD
from braintumor.evaluation.crossval import cross_validate_fold
from braintumor.training.config import TrainingConfig
from braintumor_zenml.materializers import ImageFolder
from steps.train_backbone import _log_epoch


@step(substitutions={"scheme": "scheme", "fold": "fold"})
def cv_fold(
    images: ImageFolder,
    folds: pd.DataFrame,
    config: TrainingConfig,
    scheme: str,
    fold: int,
    val_fraction: float,
    seed: int,
) -> Annotated[dict, ARTIFACT_CV_FOLD]:
    result = cross_validate_fold(
        folds,
        scheme,
        fold,
        config,
        images.path,
        val_fraction=val_fraction,
        seed=seed,
        progress=_log_epoch,
    )
    log_metadata(metadata={k: v for k, v in result.items() if k != "recall"})
    return result
