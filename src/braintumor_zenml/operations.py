"""Model Control Plane operations the CLI runs outside a pipeline run: promote a version to
production (re-checking the gate, under the repository's policy, against today's production
model), roll production back, and package a version.

Whatever can fail comes before the stage moves: a refused or failed promotion or rollback
leaves production as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zenml import log_metadata
from zenml.client import Client
from zenml.enums import ModelStages
from zenml.models import ModelVersionResponse

from braintumor.constants import (
    ARTIFACT_BEST_MODEL,
    ARTIFACT_GUARD,
    ARTIFACT_IMAGES,
    ARTIFACT_OOD_DETECTOR,
    ARTIFACT_SPLITS,
    ARTIFACT_TEST_METRICS,
    ARTIFACT_TEST_PREDICTIONS,
    MODEL_NAME,
)
from braintumor.lineage import git_commit
from braintumor.params import DEFAULT_PARAMS_FILE, promotion_policy
from braintumor.promotion import (
    CandidateScores,
    Decision,
    GatePolicy,
    decide_promotion,
    rollback_target,
)
from braintumor_zenml.registry import model_version_in_stage, now_iso, production_history, set_stage


class PromotionError(ValueError):
    """A promotion or packaging request that cannot be carried out as asked."""


def find_version(version: int | None = None, stage: str | None = None) -> ModelVersionResponse:
    """A version by number, or the one in `stage`; a clear error when there is none."""
    if (version is None) == (stage is None):
        raise PromotionError("give exactly one of a version number or a stage")
    try:
        if version is not None:
            return Client().get_model_version(MODEL_NAME, version)
        return Client().get_model_version(MODEL_NAME, ModelStages(stage))
    except KeyError:
        what = f"version {version}" if version is not None else f"a version in stage {stage}"
        raise PromotionError(f"model {MODEL_NAME} has no {what}") from None


def _run_artifact(model_version: ModelVersionResponse, name: str) -> Any:
    artifact = model_version.get_artifact(name)
    if artifact is None:
        raise PromotionError(f"version {model_version.number} has no {name!r} artifact")
    return _load(artifact, model_version.number, name)


def _load(artifact: Any, number: int, name: str) -> Any:
    """The artifact's value; an artifact whose materializer or type this installation cannot
    import (written by other code) is a clear error, not a traceback."""
    try:
        return artifact.load()
    except ImportError as exc:  # ModuleNotFoundError included
        raise PromotionError(
            f"version {number}'s {name!r} artifact cannot be loaded ({exc}): it was written "
            "by code this installation lacks; install the braintumor version that trained it, "
            "or retrain"
        ) from None


def promote_to_production(
    version: int, params_path: Path | str = DEFAULT_PARAMS_FILE, dry_run: bool = False
) -> tuple[Decision, ModelVersionResponse]:
    """Re-check the gate of `version` against the current production model on the version's
    own test images, under the repository's policy (`params_path`'s `gate:`, not the one its
    run used); move it to production if it passes (unless `dry_run`)."""
    from braintumor.evaluation.comparison import compare_with_production
    from braintumor_zenml.registry import production_incumbent

    gate_policy = GatePolicy(promotion_policy(params_path), source=f"{params_path}:gate")
    candidate_version = find_version(version=version)
    metadata = candidate_version.run_metadata
    if "promoted_to" not in metadata and "gate_summary" not in metadata:
        raise PromotionError(f"version {version} has no gate record: did its run finish?")
    if "same_model_as" in metadata:
        original = metadata["same_model_as"]
        raise PromotionError(
            f"version {version} holds the same model as version {original}: promote {original}"
        )
    test_metrics = _run_artifact(candidate_version, ARTIFACT_TEST_METRICS)
    candidate = CandidateScores.from_metrics(test_metrics)
    class_names = tuple(test_metrics["class_names"])
    production = model_version_in_stage("production")
    if production is not None and production.id == candidate_version.id:
        raise PromotionError(f"version {version} is already in production")
    incumbent = None
    if production is not None:
        images = _run_artifact(candidate_version, ARTIFACT_IMAGES)
        predictions = _run_artifact(candidate_version, ARTIFACT_TEST_PREDICTIONS)
        splits = _run_artifact(candidate_version, ARTIFACT_SPLITS)
        incumbent, _ = compare_with_production(
            production_incumbent(production, images.path),
            predictions,
            splits,
            gate_policy.policy.min_comparison_images,
            class_names,
        )
    decision = decide_promotion(candidate, incumbent, gate_policy, class_names, "production")
    if decision.passed and not dry_run:
        record = {**decision.to_dict(), "git_commit": git_commit(), "at": now_iso()}
        set_stage(candidate_version, "production", {"promotion_recheck": record})
    return decision, candidate_version


@dataclass(frozen=True)
class Rollback:
    """What `rollback_production` did, as recorded on both versions."""

    from_version: int
    to_version: int
    reason: str
    model_tag: str
    bento_tag: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "from_version": self.from_version,
            "to_version": self.to_version,
            "reason": self.reason,
            "bentoml_model": self.model_tag,
            "bento": self.bento_tag or "not built",
        }


def rollback_production(reason: str, to: int | None = None, build: bool = True) -> Rollback:
    """Put the previous production version (or `to`) back in production, with `reason`.

    The version is packaged first (its BentoML model becomes the latest, labelled production),
    then the stage moves: if packaging fails, production is unchanged. The record (from, to,
    reason, who, when, git commit) goes on both versions' metadata."""
    reason = reason.strip()
    if not reason:
        raise PromotionError("a rollback needs a reason (--reason)")
    current = model_version_in_stage("production")
    target_number = rollback_target(production_history(), current.number if current else None, to)
    target, (model_tag, bento_tag) = package_version(
        version=target_number, build=build, as_stage="production"
    )
    done = Rollback(current.number, target.number, reason, model_tag, bento_tag)
    record = {
        **done.to_dict(),
        "at": now_iso(),
        "by": Client().active_user.name,
        "git_commit": git_commit(),
    }
    set_stage(target, "production", {"rollback": record})
    log_metadata(
        metadata={"rolled_back": record, "rolled_back_at": record["at"]},
        model_version_id=current.id,
    )
    return done


def package_version(
    version: int | None = None,
    stage: str | None = None,
    build: bool = True,
    as_stage: str | None = None,
):
    """Package a version (by number or stage) into BentoML, with its guard when its run
    fitted one: `(model_version, (model_tag, bento_tag))`. `as_stage` is the stage the model
    card states (default: the version's own), for a version packaged before it moves there."""
    from braintumor.constants import VAL
    from braintumor.guard.review import GuardCard
    from braintumor.serving.store import package_model
    from braintumor.training.dataset import label_indices, load_images, select_split
    from braintumor_zenml.registry import model_card

    model_version = find_version(version, stage)
    model = _run_artifact(model_version, ARTIFACT_BEST_MODEL)
    card = model_card(model_version, stage=as_stage)
    images = _run_artifact(model_version, ARTIFACT_IMAGES)
    rows = select_split(_run_artifact(model_version, ARTIFACT_SPLITS), VAL)
    parity = load_images(rows["path"].tolist(), images.path, card.spec).astype("float32")
    labels = label_indices(rows["label"].tolist(), card.class_names)
    guard = None
    guard_card = model_version.get_artifact(ARTIFACT_GUARD)
    detector = model_version.get_artifact(ARTIFACT_OOD_DETECTOR)
    if guard_card is not None and detector is not None:
        guard = (
            GuardCard.model_validate(_load(guard_card, model_version.number, ARTIFACT_GUARD)),
            _load(detector, model_version.number, ARTIFACT_OOD_DETECTOR),
        )
    tags = package_model(
        model, card, parity_inputs=parity, parity_labels=labels, build=build, guard=guard
    )
    return model_version, tags
