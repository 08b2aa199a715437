"""Step: the current side of a drift check: new images or the service's prediction log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import pandas as pd
from zenml import log_metadata, step

from braintumor.constants import ARTIFACT_DRIFT_CURRENT
from braintumor.monitoring.monitor import load_features


@step(enable_cache=False)  # new images and log lines arrive between runs
def load_current_features(
    current: str, since: str | None = None
) -> Annotated[pd.DataFrame, ARTIFACT_DRIFT_CURRENT]:
    """Features of `current` (a folder of images, a log or a table); `since` (ISO 8601 with
    a time zone) keeps only recent log lines."""
    source = load_features(current, since=datetime.fromisoformat(since) if since else None)
    log_metadata(
        metadata={
            "source": current,
            "kind": source.kind,
            "rows": len(source.frame),
            "skipped_files": len(source.skipped),
            "skipped_reasons": sorted({s.reason for s in source.skipped}),
            "skipped_log_lines": source.skipped_lines,
        }
    )
    return source.frame
