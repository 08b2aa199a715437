"""Step: the images a tuning study may see: the kept train and val rows of the split, in a
folder of their own, so that no test image reaches the trials."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import pandas as pd
from zenml import log_metadata, step

from braintumor.tuning import link_images, tuning_rows
from braintumor_zenml.materializers import ImageFolder, ImageFolderMaterializer


@step(output_materializers={"tuning_images": ImageFolderMaterializer})
def tuning_data(
    images: ImageFolder, splits: pd.DataFrame
) -> tuple[Annotated[ImageFolder, "tuning_images"], Annotated[pd.DataFrame, "tuning_rows"]]:
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
