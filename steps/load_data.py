"""Step: the data a run trains on (an ingested folder, or any ingestable source)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import pandas as pd
from zenml import get_step_context, log_metadata, step

from braintumor.constants import ARTIFACT_IMAGES, ARTIFACT_MANIFEST, MANIFEST_FILE
from braintumor.data.ingest import ingest
from braintumor.data.manifest import read_manifest
from braintumor_zenml.materializers import ImageFolder, ImageFolderMaterializer


@step(output_materializers={ARTIFACT_IMAGES: ImageFolderMaterializer})
def load_data(
    source: str, data_hash: str
) -> tuple[Annotated[ImageFolder, ARTIFACT_IMAGES], Annotated[pd.DataFrame, ARTIFACT_MANIFEST]]:
    """Use `source` if it is an ingested folder (has a manifest), else ingest it first.

    `data_hash` identifies the data version: it is a parameter so that changed data at the
    same path never hits the cache, and it is recorded as lineage.
    """
    folder = Path(source)
    quarantined = 0
    if not (folder / MANIFEST_FILE).is_file():
        folder = Path(tempfile.mkdtemp(prefix="braintumor-ingest-")) / "raw"
        result = ingest(source, out_dir=folder)
        quarantined = len(result.quarantine)
    manifest = read_manifest(folder)
    counts = manifest.groupby(["split", "label"]).size()
    seen = {
        "data_hash": data_hash,
        "images": len(manifest),
        "images_by_source": {str(k): int(n) for k, n in manifest["source"].value_counts().items()},
    }
    log_metadata(
        metadata={
            **seen,
            "source": source,
            "quarantined_at_ingest": quarantined,
            "counts": {f"{s}/{c}": int(n) for (s, c), n in counts.items()},
        }
    )
    if get_step_context().model_version is not None:  # the training pipeline's version
        log_metadata(metadata={"data": seen}, infer_model=True)  # what this version saw
    return ImageFolder(folder), manifest
