"""Step: run the Optuna study's trials (train on train rows, score weighted F1 on val rows)."""

from __future__ import annotations

from typing import Annotated, Any

import pandas as pd
from zenml import log_metadata, step
from zenml.logger import get_logger

from braintumor.constants import ARTIFACT_BEST_RUN_CONFIG, ARTIFACT_STUDY_SUMMARY
from braintumor.training.trainer import EpochReport
from braintumor.tuning import run_study
from braintumor_zenml.materializers import ImageFolder

logger = get_logger(__name__)


def _log_epoch(report: EpochReport) -> None:
    shown = " ".join(f"{k}={v:.4f}" for k, v in report.metrics.items())
    logger.info(f"epoch {report.epoch}/{report.max_epochs} ({report.seconds:.0f}s) {shown}")


@step(enable_cache=False)  # a study goes on with every run: never served from the cache
def tune_trials(
    images: ImageFolder,
    rows: pd.DataFrame,
    run: dict[str, Any],
    clahe: dict[str, Any],
    storage: str,
    study_name: str,
    n_trials: int,
    context: dict[str, str],
) -> tuple[Annotated[dict, ARTIFACT_STUDY_SUMMARY], Annotated[dict, ARTIFACT_BEST_RUN_CONFIG]]:
    """`n_trials` more trials of `study_name`; `images` and `rows` hold no test image."""
    outcome = run_study(
        run,
        rows,
        images.path,
        n_trials=n_trials,
        storage=storage,
        study_name=study_name,
        clahe=clahe,
        context=context,
        progress=_log_epoch,
    )
    summary = outcome.summary()
    log_metadata(
        metadata={
            "study_name": summary["study_name"],
            "storage": summary["storage"],
            "new_trials": summary["new_trials"],
            "trial_states": summary["states"],
            "best_trial": summary["best"],
        }
    )
    return summary, outcome.best_run
