"""Step: train one backbone (invoked once per backbone as `train_<backbone>`)."""

from __future__ import annotations

from typing import Annotated

import keras
import pandas as pd
from zenml import log_metadata, step
from zenml.artifacts.artifact_config import ArtifactConfig
from zenml.enums import ArtifactType
from zenml.logger import get_logger

from braintumor.constants import ARTIFACT_MODEL, ARTIFACT_TRAINING
from braintumor.training.config import TrainingConfig
from braintumor.training.dataset import load_split_arrays
from braintumor.training.trainer import EpochReport, train_model
from braintumor_zenml.materializers import ImageFolder

logger = get_logger(__name__)


def _log_epoch(report: EpochReport) -> None:
    shown = " ".join(f"{k}={v:.4f}" for k, v in report.metrics.items())
    logger.info(
        f"[{report.phase}] epoch {report.epoch}/{report.max_epochs} ({report.seconds:.0f}s) {shown}"
    )


@step(substitutions={"backbone": "backbone"})
def train_backbone(
    images: ImageFolder, splits: pd.DataFrame, class_balance: dict, config: TrainingConfig
) -> tuple[
    Annotated[keras.Model, ArtifactConfig(name=ARTIFACT_MODEL, artifact_type=ArtifactType.MODEL)],
    Annotated[dict, ARTIFACT_TRAINING],
]:
    """Train `config.backbone` on the split's train rows, early-stopped on its val rows."""
    data = load_split_arrays(
        splits, images.path, config.preprocessing, class_names=config.class_names
    )
    result = train_model(config, data, progress=_log_epoch)
    summary = {
        "backbone": config.backbone,
        "task": config.task,
        "seconds": round(result.seconds, 1),
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "best_val_loss": result.best_val_loss,
        "params": int(result.model.count_params()),
        "train_images": len(data.train),
        "val_images": len(data.val),
        "train_class_counts_after_balancing": result.train_class_counts,
        "runtime": {
            "gpus": result.runtime.gpus,
            "mixed_precision": result.runtime.mixed_precision,
            "mirrored": result.runtime.mirrored,
        },
        "phases": result.phases,
        "history": {
            k: [float(v) if isinstance(v, int | float) else v for v in values]
            for k, values in result.history.items()
        },
        "balance_plan": class_balance.get(config.backbone),
    }
    log_metadata(metadata={k: v for k, v in summary.items() if k != "history" and v is not None})
    return result.model, summary
