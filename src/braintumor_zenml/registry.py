"""Lookups in the ZenML store shared by several steps (not a step itself)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from zenml import get_step_context, log_metadata
from zenml.client import Client
from zenml.enums import ModelStages
from zenml.models import ArtifactVersionResponse, ModelVersionResponse

from braintumor.constants import (
    ARTIFACT_BEST_MODEL,
    ARTIFACT_SPLITS,
    ARTIFACT_TEST_METRICS,
    MODEL_NAME,
)
from braintumor.promotion import ProductionRecord


def this_run_artifact(step_name: str, output_name: str) -> ArtifactVersionResponse:
    """An output of another step of the *current* run (never "latest by name")."""
    run = Client().get_pipeline_run(get_step_context().pipeline_run.id)
    try:
        return run.steps[step_name].outputs[output_name][0]
    except KeyError:
        raise KeyError(f"this run has no output {output_name!r} of step {step_name!r}") from None


def model_version_in_stage(
    stage: str | ModelStages, name: str = MODEL_NAME
) -> ModelVersionResponse | None:
    """The version of `name` in `stage` (e.g. production), or None when there is none."""
    try:
        return Client().get_model_version(name, ModelStages(stage))
    except KeyError:
        return None


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def set_stage(model_version: ModelVersionResponse, stage: str, record: dict[str, Any]) -> None:
    """Move `model_version` to `stage` (its previous holder is archived) and record why on the
    version; entering production is timestamped (`production_since`), for rollback."""
    model_version.set_stage(stage, force=True)
    metadata = {"promoted_to": stage, **record}
    if stage == "production":
        metadata["production_since"] = now_iso()
    log_metadata(metadata=metadata, model_version_id=model_version.id)


def production_history(name: str = MODEL_NAME) -> list[ProductionRecord]:
    """What each version of `name` recorded about its time in production. Versions promoted
    before `production_since` was recorded count from their creation time."""
    records = []
    for version in Client().list_model_versions(name, size=1000, hydrate=True):
        metadata = version.run_metadata
        since = metadata.get("production_since")
        if since is None and metadata.get("promoted_to") == "production":
            created = version.created
            since = (created if created.tzinfo else created.replace(tzinfo=UTC)).isoformat()
        records.append(ProductionRecord(version.number, since, metadata.get("rolled_back_at")))
    return records


def earlier_version_holding(
    artifact: ArtifactVersionResponse, model_version: ModelVersionResponse
) -> ModelVersionResponse | None:
    """The first version of `model_version`'s model before it that holds `artifact` too (a
    re-run whose training came from the cache holds the very artifact), or None."""
    client = Client()
    links = client.list_model_version_artifact_links(artifact_version_id=artifact.id, size=100)
    others = [
        client.get_model_version(model_version.model.id, link.model_version)
        for link in links
        if link.model_version != model_version.id
    ]
    others = [other for other in others if other.number < model_version.number]
    return min(others, key=lambda other: other.number) if others else None


FLAT_METRICS = ("weighted_f1", "macro_f1", "accuracy", "balanced_accuracy", "roc_auc_macro", "ece")


def flat_metrics(test_metrics: dict[str, Any]) -> dict[str, float]:
    """The scalar test metrics (what a model card and /metadata show)."""
    metrics = {k: float(test_metrics[k]) for k in FLAT_METRICS if test_metrics.get(k) is not None}
    low, high = test_metrics["weighted_f1_ci"]
    metrics.update(weighted_f1_ci_low=float(low), weighted_f1_ci_high=float(high))
    for name, values in test_metrics["per_class"].items():
        if values["support"]:
            metrics[f"recall_{name}"] = float(values["recall"])
    for name, value in (test_metrics.get("tumour_vs_none") or {}).items():
        if name in ("sensitivity", "specificity") and value is not None:
            metrics[f"tumour_{name}"] = float(value)
    return metrics


def source_metrics(test_metrics: dict[str, Any]) -> dict[str, dict[str, float]]:
    """`flat_metrics` per source of the test images, with their count; figures a source's
    images cannot define (one class only: no AUC) are left out."""
    by_source = {}
    for source, figures in (test_metrics.get("by_source") or {}).items():
        flat = {**flat_metrics(figures), "images": float(figures["n"])}
        by_source[source] = {k: v for k, v in flat.items() if math.isfinite(v)}
    return by_source


def model_card(model_version: ModelVersionResponse, stage: str | None = None):
    """The serving model card of a ZenML model version, from what its run recorded."""
    from braintumor.serving.metadata import ModelCard
    from braintumor.tasks import task_of

    test_artifact = model_version.get_artifact(ARTIFACT_TEST_METRICS)
    metadata = dict(model_version.run_metadata)
    if "preprocessing" not in metadata:
        # evaluate_winner came from the cache: the metadata it logged went to the version of
        # the run that executed it.
        producer = Client().get_pipeline_run(test_artifact.producer_pipeline_run_id)
        if producer.model_version is not None:
            metadata = {**producer.model_version.run_metadata, **metadata}
    test_metrics = test_artifact.load()
    class_names = tuple(test_metrics["class_names"])
    return ModelCard(
        task=task_of(class_names),
        class_names=class_names,
        preprocessing=dict(metadata["preprocessing"]),
        backbone=str(metadata["backbone"]),
        model_version=str(model_version.number),
        stage=stage or (model_version.stage or "none"),
        metrics=flat_metrics(test_metrics),
        metrics_by_source=source_metrics(test_metrics),
        protocol=str(metadata.get("protocol")),
        data_hash=str(metadata.get("data_hash")),
        git_commit=str(metadata.get("git_commit")),
        temperature=float(metadata.get("temperature", 1.0)),
        class_offsets=metadata.get("class_offsets"),
    )


def production_incumbent(model_version: ModelVersionResponse, images_root: str):
    """`model_version` (production) as the gate compares with it
    (`braintumor.evaluation.comparison.Incumbent`): its recorded split, its classes, and its
    calibrated probabilities on images under `images_root`, its model loaded only if asked."""
    from braintumor.evaluation.calibration import calibrate
    from braintumor.evaluation.comparison import Incumbent
    from braintumor.models.inference import predict_proba
    from braintumor.preprocessing import PreprocessSpec
    from braintumor.training.dataset import load_images

    recorded = model_version.get_artifact(ARTIFACT_SPLITS)
    if recorded is None:
        return Incumbent(str(model_version.number), None, (), score=lambda paths: None)

    def score(paths: list[str]):
        metadata = model_version.run_metadata
        spec = PreprocessSpec.from_dict(dict(metadata["preprocessing"]))
        model = model_version.get_artifact(ARTIFACT_BEST_MODEL).load()
        probs = predict_proba(model, load_images(paths, images_root, spec))
        return calibrate(probs, float(metadata.get("temperature", 1.0)))

    test_metrics = model_version.get_artifact(ARTIFACT_TEST_METRICS).load()
    names = tuple(test_metrics["class_names"])
    return Incumbent(str(model_version.number), recorded.load(), names, score=score)
