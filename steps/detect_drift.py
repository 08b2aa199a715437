"""Step: compare current with reference features, record the verdict on the production model
version (when there is one) and return Evidently's report as a ZenML visualisation."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import pandas as pd
from zenml import get_step_context, log_metadata, step
from zenml.types import HTMLString

from braintumor.constants import ARTIFACT_DRIFT_REPORT, ARTIFACT_DRIFT_SUMMARY, MODEL_NAME
from braintumor.monitoring.drift import DriftPolicy, drift_report
from braintumor_zenml.production_model import production_model_version


@step(enable_cache=False)
def detect_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    policy: dict[str, Any] | None = None,
    model_name: str = MODEL_NAME,
) -> tuple[
    Annotated[HTMLString, ARTIFACT_DRIFT_REPORT],
    Annotated[dict[str, Any], ARTIFACT_DRIFT_SUMMARY],
]:
    """Drift report under `policy` (`DriftPolicy` fields; default thresholds when None)."""
    result = drift_report(reference, current, policy=DriftPolicy(**(policy or {})))
    summary = result.summary()
    headline = {
        key: summary[key]
        for key in ("drifted", "share_drifted", "drifted_columns", "reasons", "current_rows")
    }
    log_metadata(metadata=headline)
    version = production_model_version(model_name)
    if version is not None:
        context = get_step_context()
        check = {
            **headline,
            "checked_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "pipeline_run": context.pipeline_run.name,
        }
        log_metadata(metadata={"drift_check": check}, model_version_id=version.id)
        summary["model_version"] = version.name
    return HTMLString(result.html), summary
