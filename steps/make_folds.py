"""Step: the cross-validation folds, grouped by duplicate cluster and ungrouped."""

from __future__ import annotations

from typing import Annotated

import pandas as pd
from zenml import log_metadata, step

from braintumor.constants import ARTIFACT_CV_FOLDS
from braintumor.evaluation.crossval import assign_folds


@step
def make_folds(
    splits: pd.DataFrame, n_folds: int, seed: int
) -> Annotated[pd.DataFrame, ARTIFACT_CV_FOLDS]:
    folds = assign_folds(splits, n_folds, seed)
    log_metadata(
        metadata={
            "folds": n_folds,
            "grouped_images": int((folds["grouped_fold"] >= 0).sum()),
            "ungrouped_images": int((folds["ungrouped_fold"] >= 0).sum()),
        }
    )
    return folds
