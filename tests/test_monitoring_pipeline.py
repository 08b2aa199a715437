"""The monitoring pipeline, end to end on the sample, in the session's isolated ZenML store."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import pytest
from zenml import pipeline, step

from braintumor.constants import (
    ARTIFACT_DRIFT_REPORT,
    ARTIFACT_DRIFT_SUMMARY,
    ARTIFACT_REFERENCE_FEATURES,
    TRAIN,
)
from braintumor.data.manifest import read_manifest
from braintumor_zenml.materializers import ImageFolder, ImageFolderMaterializer
from steps.compute_reference_features import compute_reference_features

pytestmark = pytest.mark.slow


@step(output_materializers={"raw_images": ImageFolderMaterializer})
def folder_and_splits(
    raw: str,
) -> tuple[Annotated[ImageFolder, "raw_images"], Annotated[pd.DataFrame, "splits"]]:
    """Stands in for the training pipeline's load and split steps: the sample's Training
    images as the train split."""
    manifest = read_manifest(Path(raw))
    train = np.where(manifest["split"] == "training", TRAIN, "test")
    splits = manifest.assign(split=train, status="kept")[["path", "label", "split", "status"]]
    return ImageFolder(Path(raw)), splits


@pipeline(enable_cache=False)
def training_like(raw: str) -> None:
    images, splits = folder_and_splits(raw=raw)
    compute_reference_features(images, splits)


def _artifact(run, step: str, name: str):
    return run.steps[step].outputs[name][0]


def test_pipeline_with_a_reference_folder_produces_an_html_report(
    sample_dir: Path, dark_folder: Path
):
    from zenml.client import Client
    from zenml.types import HTMLString

    from pipelines.monitoring import run_monitoring

    summary, html_text, run_name = run_monitoring(
        current=str(dark_folder),
        reference=str(sample_dir / "Training"),
        model_name=f"no-such-model-{uuid.uuid4().hex[:8]}",
    )
    assert summary["drifted"] is True
    assert "width" in summary["drifted_columns"]
    assert "model_version" not in summary  # no production model: nothing to annotate
    run = Client().get_pipeline_run(run_name)
    report = _artifact(run, "detect_drift", ARTIFACT_DRIFT_REPORT)
    html = report.load()
    assert isinstance(html, HTMLString) and "intensity_mean" in html and len(html) > 100_000
    assert html_text == str(html)
    assert report.visualizations and report.visualizations[0].type.value == "html"
    assert run.steps["load_reference_features"].run_metadata["rows"] == 25
    assert run.steps["detect_drift"].run_metadata["drifted"] is True


def test_pipeline_uses_and_annotates_the_production_model(sample_dir: Path, tmp_path: Path):
    """A training-like run links reference features to a model version; once it is in
    production, the monitoring pipeline needs no reference path and records its verdict."""
    from zenml import Model
    from zenml.client import Client

    from braintumor.data.ingest import ingest
    from pipelines.monitoring import run_monitoring

    raw = tmp_path / "raw"
    ingest(str(sample_dir), out_dir=raw)
    model_name = f"drift-test-{uuid.uuid4().hex[:8]}"
    training_like.with_options(model=Model(name=model_name))(raw=str(raw))
    version = Client().get_model_version(model_name)
    reference = version.get_artifact(ARTIFACT_REFERENCE_FEATURES).load()
    assert len(reference) == 25  # the sample's training images, planted bad files excluded
    assert not reference["image"].str.startswith("/").any()
    version.set_stage("production", force=True)

    summary, _, run_name = run_monitoring(
        current=str(sample_dir / "Testing"),
        reference=None,
        model_name=model_name,
        policy={"min_rows": 5},  # the sample's Testing folder holds 9 images
    )
    assert summary["model_version"] == version.name
    production = Client().get_model_version(model_name, "production")
    check = production.run_metadata["drift_check"]
    assert check["pipeline_run"] == run_name
    assert check["drifted"] == summary["drifted"]
    assert check["current_rows"] == 9
    summary_artifact = _artifact(
        Client().get_pipeline_run(run_name), "detect_drift", ARTIFACT_DRIFT_SUMMARY
    )
    assert summary_artifact.load()["reference_rows"] == 25
    # The metadata names the artifact it used (this run recorded no answer reference).
    loaded = Client().get_pipeline_run(run_name).steps["load_reference_features"]
    expected = f"{model_name}:{version.name} ({ARTIFACT_REFERENCE_FEATURES})"
    assert loaded.run_metadata["source"] == expected


def test_pipeline_without_reference_or_production_model_fails_clearly(sample_dir: Path):
    from braintumor_zenml.production_model import NoReferenceError
    from pipelines.monitoring import run_monitoring

    with pytest.raises(NoReferenceError, match="has no production version; pass a reference"):
        run_monitoring(current=str(sample_dir / "Testing"), model_name="never-trained-model")
