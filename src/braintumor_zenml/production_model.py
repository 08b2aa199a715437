"""The production model version of a model, and the reference features it was trained on."""

from __future__ import annotations

from zenml.models import ArtifactVersionResponse, ModelVersionResponse

from braintumor.constants import ARTIFACT_ANSWER_REFERENCE, ARTIFACT_REFERENCE_FEATURES
from braintumor_zenml.registry import model_version_in_stage


class NoReferenceError(ValueError):
    """No reference for a drift check: no production model, or none with reference features."""


def production_model_version(model_name: str) -> ModelVersionResponse | None:
    """The model version of `model_name` in production, or None (no model, or none promoted)."""
    return model_version_in_stage("production", model_name)


def production_reference(model_name: str) -> tuple[ArtifactVersionResponse, str]:
    """The drift reference of the production version, and that version's name: its
    `answer_reference` (validation images with the model's confidence and OOD scores) when
    its run recorded one, else its `reference_features` (training images only)."""
    version = production_model_version(model_name)
    if version is None:
        raise NoReferenceError(
            f"no reference data: model {model_name!r} has no production version; pass a "
            "reference folder, log or feature table"
        )
    artifact = version.get_artifact(ARTIFACT_ANSWER_REFERENCE) or version.get_artifact(
        ARTIFACT_REFERENCE_FEATURES
    )
    if artifact is None:
        raise NoReferenceError(
            f"{model_name} version {version.name} (production) has no "
            f"{ARTIFACT_REFERENCE_FEATURES!r} artifact (its training run did not record one); "
            "pass a reference folder, log or feature table"
        )
    return artifact, version.name
