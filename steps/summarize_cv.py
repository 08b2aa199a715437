"""Step: mean ± standard deviation across folds, grouped and ungrouped, as run and model-version
metadata and an HTML report. Never cached: a cached step would log nothing on the new run's
model version."""

from __future__ import annotations

from typing import Annotated

from zenml import get_step_context, log_metadata, step
from zenml.types import HTMLString

from braintumor.constants import ARTIFACT_CV_REPORT, ARTIFACT_CV_SUMMARY
from braintumor.evaluation.crossval import headline, render_cv_report, summarize_folds


@step(enable_cache=False)
def summarize_cv(
    fold_results: list[dict], backbone: str, data_hash: str, git_commit: str
) -> tuple[Annotated[dict, ARTIFACT_CV_SUMMARY], Annotated[HTMLString, ARTIFACT_CV_REPORT]]:
    summary = summarize_folds(fold_results)
    summary.update(backbone=backbone, data_hash=data_hash, git_commit=git_commit)
    run = get_step_context().pipeline_run
    html = render_cv_report(
        summary,
        f"Cross-validation of {backbone}: {summary['folds']} folds",
        {"run": run.name, "data": data_hash, "code": git_commit},
    )
    flat = headline(summary)
    log_metadata(metadata=flat)
    log_metadata(metadata={**flat, "cv": summary}, run_id_name_or_prefix=run.id)
    log_metadata(metadata={**flat, "cv": summary}, infer_model=True)
    return summary, HTMLString(html)
