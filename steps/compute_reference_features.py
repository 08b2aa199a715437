"""Step (training pipeline): the image features of the training split, linked to the model
version the run produces, so a later drift check compares against what the model learnt."""

from __future__ import annotations

from typing import Annotated

import pandas as pd
from zenml import log_metadata, step

from braintumor.constants import ARTIFACT_REFERENCE_FEATURES, TRAIN
from braintumor.monitoring.features import SkippedImage, manifest_feature_table
from braintumor_zenml.materializers import ImageFolder


@step
def compute_reference_features(
    images: ImageFolder, splits: pd.DataFrame, split: str = TRAIN
) -> Annotated[pd.DataFrame, ARTIFACT_REFERENCE_FEATURES]:
    """Features of the `split` rows (status `kept`) of the splits table, read from `images`."""
    skipped: list[SkippedImage] = []
    table = manifest_feature_table(images.path, splits, split=split, skipped=skipped)
    log_metadata(
        metadata={
            "split": split,
            "images": len(table),
            "skipped": len(skipped),
            "columns": [c for c in table.columns if c != "image"],
        }
    )
    return table
