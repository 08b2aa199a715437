"""Model Control Plane operations the CLI runs outside a pipeline run: promote a version to
production (re-checking the gate against today's production model) and package a version."""

from __future__ import annotations

from typing import Any

from zenml import log_metadata
from zenml.client import Client
from zenml.enums import ModelStages
from zenml.models import ModelVersionResponse

from braintumor.constants import ARTIFACT_BEST_MODEL, CLASS_NAMES, MODEL_NAME
from braintumor.promotion import CandidateScores, Decision, PromotionPolicy, decide_promotion
from steps.registry import model_version_in_stage


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
    return artifact.load()


def promote_to_production(version: int) -> tuple[Decision, ModelVersionResponse]:
    """Re-check the gate of `version` against the current production model on the version's
    own test images, with the policy its run recorded; move it to production if it passes."""
    from steps.gate import compare_with_production

    candidate_version = find_version(version=version)
    metadata = candidate_version.run_metadata
    if "policy" not in metadata:
        raise PromotionError(f"version {version} has no gate record: did its run finish?")
    policy = PromotionPolicy(**{**dict(metadata["policy"]), "promote_to": "production"})
    test_metrics = _run_artifact(candidate_version, "test_metrics")
    candidate = CandidateScores.from_metrics(test_metrics)
    production = model_version_in_stage("production")
    if production is not None and production.id == candidate_version.id:
        raise PromotionError(f"version {version} is already in production")
    incumbent = None
    if production is not None:
        images = _run_artifact(candidate_version, "raw_images")
        predictions = _run_artifact(candidate_version, "test_predictions")
        incumbent, _ = compare_with_production(production, images, predictions)
    decision = decide_promotion(candidate, incumbent, policy, CLASS_NAMES)
    if decision.passed:
        candidate_version.set_stage("production", force=True)
        log_metadata(
            metadata={"promoted_to": "production", "promotion_recheck": decision.to_dict()},
            model_name=MODEL_NAME,
            model_version=str(candidate_version.number),
        )
    return decision, candidate_version


def package_version(version: int | None = None, stage: str | None = None, build: bool = True):
    """Package a version (by number or stage) into BentoML: `(model_tag, bento_tag)`."""
    from braintumor.constants import VAL
    from braintumor.serving.store import package_model
    from braintumor.training.dataset import label_indices, load_images, select_split
    from steps.registry import model_card

    model_version = find_version(version, stage)
    model = _run_artifact(model_version, ARTIFACT_BEST_MODEL)
    card = model_card(model_version)
    images = _run_artifact(model_version, "raw_images")
    rows = select_split(_run_artifact(model_version, "splits"), VAL)
    parity = load_images(rows["path"].tolist(), images.path, card.spec).astype("float32")
    labels = label_indices(rows["label"].tolist())
    tags = package_model(model, card, parity_inputs=parity, parity_labels=labels, build=build)
    return model_version, tags
