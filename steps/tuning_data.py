"""Step: the images a tuning study may see: the kept train and val rows of the split, in a
folder of their own, so that no test image reaches the trials."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import pandas as pd
from zenml import log_metadata, step

from braintumor.constants import ARTIFACT_TUNING_IMAGES, ARTIFACT_TUNING_ROWS
from braintumor.tuning import link_images, tuning_rows
from braintumor_zenml.materializers import ImageFolder, ImageFolderMaterializer


@step(output_materializers={ARTIFACT_TUNING_IMAGES: ImageFolderMaterializer})
def tuning_data(
    images: ImageFolder, splits: pd.DataFrame
) -> tuple[
    Annotated[ImageFolder, ARTIFACT_TUNING_IMAGES], Annotated[pd.DataFrame, ARTIFACT_TUNING_ROWS]
]:
    rows = tuning_rows(splits)
    folder = link_images(rows, images.path, Path(tempfile.mkdtemp(prefix="braintumor-tune-")))
    counts = rows.groupby(["split", "label"]).size()
    log_metadata(
        metadata={
            "images": len(rows),
            "counts": {f"{s}/{c}": int(n) for (s, c), n in counts.items()},
            "test_images_held_back": int((splits["split"] == "test").sum()),
        }
    )
    return ImageFolder(folder), rows
