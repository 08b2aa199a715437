"""Step: the promotion gate. Re-scores the production model on this run's test images that
neither model trained on (from both versions' recorded splits) and calls the pure
`decide_promotion` under the repository's policy (params.yaml `gate:`, read
when the run starts) with the run config's overrides. `production_version` and the policy
are parameters, so the gate is only served from cache while both are unchanged."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import pandas as pd
from zenml import log_metadata, step
from zenml.logger import get_logger

from braintumor.constants import (
    ARTIFACT_BEST_MODEL,
    ARTIFACT_DECISION,
    ARTIFACT_SPLITS,
    ARTIFACT_TEST_METRICS,
)
from braintumor.evaluation.calibration import calibrate
from braintumor.evaluation.metrics import mcnemar, paired_bootstrap_delta, weighted_f1
from braintumor.integrity.splits import trained_paths, unseen_by
from braintumor.preprocessing import PreprocessSpec
from braintumor.promotion import (
    CandidateScores,
    IncumbentComparison,
    NotCompared,
    PromotionPolicy,
    decide_promotion,
    effective_policy,
)
from braintumor.run_config import RunConfig
from braintumor.tasks import common_view, task_of
from braintumor.training.dataset import label_indices, load_images
from braintumor.training.trainer import predict_proba
from braintumor_zenml.materializers import ImageFolder
from braintumor_zenml.registry import model_version_in_stage

logger = get_logger(__name__)


def compare_with_production(
    production,
    images: ImageFolder,
    test_predictions: pd.DataFrame,
    splits: pd.DataFrame,
    min_images: int,
    class_names,
) -> tuple[IncumbentComparison | NotCompared, dict[str, Any]]:
    """Re-score `production` on the candidate's test images that neither model trained on
    (production's recorded split, copies included, via the candidate's `splits`) and compare
    the two image by image (paired bootstrap and McNemar); `NotCompared` when fewer than
    `min_images` are left or production has no recorded split. When the two answer different
    classes (a binary candidate, a four-class production model or the other way round), both
    are compared in the binary view: tumour vs no tumour."""
    version = str(production.number)
    recorded = production.get_artifact(ARTIFACT_SPLITS)
    if recorded is None:
        reason = f"production version {version} has no recorded split"
        return NotCompared(version, 0, reason), {}
    unseen = unseen_by(splits, test_predictions["path"].tolist(), trained_paths(recorded.load()))
    compared = test_predictions[unseen]
    excluded = int((~unseen).sum())
    if len(compared) < min_images:
        reason = (
            f"only {len(compared)} of the {len(test_predictions)} test images were seen by "
            f"neither model ({excluded} are in production's training or validation data, or "
            f"copies of them); the policy needs {min_images} (gate.min_comparison_images)"
        )
        return NotCompared(version, len(compared), reason), {"comparison_images": len(compared)}
    names = tuple(class_names)
    candidate_probs = compared[[f"p_{n}" for n in names]].to_numpy(np.float64)
    incumbent_names = tuple(production.get_artifact(ARTIFACT_TEST_METRICS).load()["class_names"])
    metadata = production.run_metadata
    spec = PreprocessSpec.from_dict(dict(metadata["preprocessing"]))
    model = production.get_artifact(ARTIFACT_BEST_MODEL).load()
    probs = calibrate(
        predict_proba(model, load_images(compared["path"].tolist(), images.path, spec)),
        float(metadata.get("temperature", 1.0)),
    )
    view = f"; as tumour vs no tumour (production is {task_of(incumbent_names)})"
    view = "" if incumbent_names == names else view
    candidate_probs, probs, names = common_view(candidate_probs, names, probs, incumbent_names)
    y = label_indices(compared["label"].tolist(), names)
    paired = paired_bootstrap_delta(y, candidate_probs, probs)
    exact = mcnemar(y, candidate_probs.argmax(axis=1), probs.argmax(axis=1))
    comparison = IncumbentComparison(
        version=version,
        weighted_f1=weighted_f1(y, probs.argmax(axis=1), len(names)),
        delta=paired.delta,
        delta_ci=paired.ci,
        p_value=paired.p_value,
        test=f"paired bootstrap; McNemar p={exact.p_value:.3g}{view}",
        images=len(compared),
        excluded=excluded,
    )
    return comparison, {
        "mcnemar_p_value": exact.p_value,
        "paired_bootstrap_p_value": paired.p_value,
        "comparison_images": len(compared),
    }


@step
def gate(
    test_metrics: dict,
    test_predictions: pd.DataFrame,
    images: ImageFolder,
    splits: pd.DataFrame,
    run: dict[str, Any],
    promotion_policy: dict[str, Any],
    policy_source: str,
    production_version: str,
    git_commit: str,
    data_hash: str,
) -> Annotated[dict, ARTIFACT_DECISION]:
    """The decision with its reasons and the policy it was made under, recorded on this run's
    model version."""
    settings = RunConfig(**run).gate
    policy = effective_policy(
        PromotionPolicy(**promotion_policy),
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
            production,
            images,
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
