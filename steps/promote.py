"""Step: move this run's model version to the stage the gate allowed (or leave it)."""

from __future__ import annotations

from typing import Annotated

from zenml import get_step_context, log_metadata, step
from zenml.logger import get_logger

logger = get_logger(__name__)


@step(enable_cache=False)
def promote(promotion_decision: dict) -> Annotated[str, "stage"]:
    """Returns the stage set ("staging"/"production"), or "none" when the gate rejected it."""
    model_version = get_step_context().model_version
    if not promotion_decision["passed"]:
        logger.warning(
            f"model version {model_version.number} NOT promoted; production is unchanged: "
            + promotion_decision["summary"]
        )
        log_metadata(metadata={"promoted_to": "none"}, infer_model=True)
        return "none"
    stage = promotion_decision["target_stage"]
    model_version.set_stage(stage, force=True)  # force: the previous holder is archived
    log_metadata(metadata={"promoted_to": stage}, infer_model=True)
    logger.info(f"model version {model_version.number} promoted to {stage}")
    return stage
