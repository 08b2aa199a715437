"""Step: the promotion gate. Re-scores the production model on this run's test images that
neither model trained on (from both versions' recorded splits) and calls the pure
`decide_promotion` under the repository's policy (params.yaml `gate:`, read
when the run starts) with the run config's overrides. `production_version` and the policy
are parameters, so the gate is only served from cache while both are unchanged."""

from __future__ import annotations

from typing import Annotated

import pandas as pd
from zenml import log_metadata, step
from zenml.logger import get_logger

from braintumor.constants import ARTIFACT_DECISION
from braintumor.evaluation.comparison import compare_with_production
from braintumor.promotion import (
    CandidateScores,
    PromotionPolicy,
    decide_promotion,
    effective_policy,
)
from braintumor.run_config import GateConfig
from braintumor_zenml.materializers import ImageFolder
from braintumor_zenml.registry import model_version_in_stage, production_incumbent

logger = get_logger(__name__)


@step
def gate(
    test_metrics: dict,
    test_predictions: pd.DataFrame,
    images: ImageFolder,
    splits: pd.DataFrame,
    settings: GateConfig,
    promotion_policy: PromotionPolicy,
    policy_source: str,
    production_version: str,
    git_commit: str,
    data_hash: str,
) -> Annotated[dict, ARTIFACT_DECISION]:
    """The decision with its reasons and the policy it was made under, recorded on this run's
    model version."""
    policy = effective_policy(
        promotion_policy,
        settings.policy_overrides,
        overridden_by="the run config's gate.policy_overrides",
        source=policy_source,
    )
    candidate = CandidateScores.from_metrics(test_metrics)
    class_names = tuple(test_metrics["class_names"])  # min_class_recall holds for each
    production = model_version_in_stage("production")
    found = str(production.id) if production else "none"
    if found != production_version:
        raise RuntimeError(
            f"production changed while this run was going (was {production_version}, is {found}):"
            " re-run to compare against the new production model"
        )
    incumbent, tests = None, {}
    if production is not None:
        incumbent, tests = compare_with_production(
            production_incumbent(production, images.path),
            test_predictions,
            splits,
            policy.policy.min_comparison_images,
            class_names,
        )
    decision = decide_promotion(
        candidate, incumbent, policy, class_names, settings.promote_to
    ).to_dict()
    decision.update(
        incumbent_version=incumbent.version if incumbent else None,
        incumbent_weighted_f1=getattr(incumbent, "weighted_f1", None),
        **tests,
    )
    logger.info(decision["summary"])
    log_metadata(
        metadata={
            "gate_passed": decision["passed"],
            "gate_reasons": decision["reasons"],
            "gate_summary": decision["summary"],
            "git_commit": git_commit,
            "data_hash": data_hash,
            "policy": policy.to_dict(),
        },
        infer_model=True,
    )
    return decision
