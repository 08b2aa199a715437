"""Step: the reference side of a drift check: a path, or the production model's own
reference (its `answer_reference`, else its `reference_features`; recorded by the training
run that produced it)."""

from __future__ import annotations

from typing import Annotated

import pandas as pd
from zenml import log_metadata, step

from braintumor.constants import ARTIFACT_DRIFT_REFERENCE, MODEL_NAME
from braintumor.monitoring.monitor import load_features
from braintumor_zenml.production_model import production_reference


@step(enable_cache=False)  # the folder behind a path changes between runs
def load_reference_features(
    reference: str | None = None, model_name: str = MODEL_NAME
) -> Annotated[pd.DataFrame, ARTIFACT_DRIFT_REFERENCE]:
    """Features from `reference` (images, log or table) or from the production model."""
    if reference:
        source = load_features(reference)
        log_metadata(metadata={"source": reference, "kind": source.kind, "rows": len(source.frame)})
        return source.frame
    artifact, version_name = production_reference(model_name)
    frame = artifact.load()
    log_metadata(
        metadata={
            "source": f"{model_name}:{version_name} ({artifact.name})",
            "kind": "model_version",
            "rows": len(frame),
        }
    )
    return frame
