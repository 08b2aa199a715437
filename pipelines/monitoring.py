"""The monitoring pipeline: reference features (a path, or the production model's own) and
current features (new images or the prediction log) -> Evidently drift report.

The verdict is recorded as `drift_check` metadata on the production model version when one
exists, and the report is the `drift_report` artifact (an HTML visualisation in the dashboard).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from zenml import pipeline
from zenml.client import Client

from braintumor.constants import ARTIFACT_DRIFT_REPORT, ARTIFACT_DRIFT_SUMMARY, MODEL_NAME
from braintumor_zenml.production_model import production_reference
from steps.detect_drift import detect_drift
from steps.load_current_features import load_current_features
from steps.load_reference_features import load_reference_features


@pipeline(enable_cache=False)
def monitoring_pipeline(
    current: str,
    reference: str | None = None,
    model_name: str = MODEL_NAME,
    policy: dict[str, Any] | None = None,
    since: str | None = None,
) -> None:
    """Drift of `current` against `reference` (default: the production model's training data)."""
    reference_features = load_reference_features(reference=reference, model_name=model_name)
    current_features = load_current_features(current=current, since=since)
    detect_drift(reference_features, current_features, policy=policy, model_name=model_name)


class MonitoringRun(NamedTuple):
    summary: dict[str, Any]  # DriftResult.summary(), plus the annotated model version if any
    html: str  # Evidently's report
    run_name: str


def run_monitoring(
    current: str,
    reference: str | None = None,
    model_name: str = MODEL_NAME,
    policy: dict[str, Any] | None = None,
    since: str | None = None,
) -> MonitoringRun:
    """Run the pipeline on the active stack; return its drift summary, report and run name.

    Raises:
        NoReferenceError: before starting, when no `reference` is given and the model has no
            production version with reference features.
    """
    if not reference:
        production_reference(model_name)  # fail fast, with the reason, not a failed run
    started = monitoring_pipeline(
        current=current, reference=reference, model_name=model_name, policy=policy, since=since
    )
    if started is None:
        raise RuntimeError("the monitoring pipeline did not start a run (scheduled?)")
    run = Client().get_pipeline_run(started.id)
    outputs = run.steps["detect_drift"].outputs
    return MonitoringRun(
        summary=outputs[ARTIFACT_DRIFT_SUMMARY][0].load(),
        html=str(outputs[ARTIFACT_DRIFT_REPORT][0].load()),
        run_name=run.name,
    )
