"""Step: move this run's model version to the stage the gate allowed (or leave it).

Never cached (a cached promote would leave the new version without a stage). A version whose
winner is the very trained model of an earlier version (its training came from the cache)
gets no stage: it records `same_model_as` instead, so a re-run that changes nothing moves
nothing.
"""

from __future__ import annotations

from typing import Annotated

from zenml import get_step_context, log_metadata, step
from zenml.logger import get_logger

from braintumor.constants import ARTIFACT_MODEL, ARTIFACT_STAGE
from braintumor_zenml.registry import earlier_version_holding, now_iso, set_stage, this_run_artifact

logger = get_logger(__name__)


@step(enable_cache=False)
def promote(promotion_decision: dict, winner: str) -> Annotated[str, ARTIFACT_STAGE]:
    """Returns the stage set ("staging"/"production"), or "none" (rejected, or the same model
    as an earlier version)."""
    model_version = get_step_context().model_version
    record = {
        "summary": promotion_decision["summary"],
        "policy": promotion_decision.get("policy", {}).get("name"),
        "at": now_iso(),
    }
    trained = this_run_artifact(f"train_{winner}", ARTIFACT_MODEL.format(backbone=winner))
    same = earlier_version_holding(trained, model_version)
    if same is not None:
        logger.warning(
            f"model version {model_version.number} holds the same model as version "
            f"{same.number} (stage {same.stage or 'none'}): no stage set"
        )
        log_metadata(
            metadata={"promoted_to": "none", "same_model_as": same.number, "promotion": record},
            model_version_id=model_version.id,
        )
        return "none"
    if not promotion_decision["passed"]:
        logger.warning(
            f"model version {model_version.number} NOT promoted; production is unchanged: "
            + promotion_decision["summary"]
        )
        log_metadata(
            metadata={"promoted_to": "none", "promotion": record},
            model_version_id=model_version.id,
        )
        return "none"
    stage = promotion_decision["target_stage"]
    set_stage(model_version, stage, {"promotion": record})
    logger.info(f"model version {model_version.number} promoted to {stage}")
    return stage
