"""Step: the data audit (exact and verified near duplicates, label conflicts, leakage,
metadata shortcuts). Its clusters feed the split; its report is a ZenML visualisation."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from zenml import log_metadata, step
from zenml.types import HTMLString

from braintumor.constants import ARTIFACT_AUDIT, ARTIFACT_AUDIT_SUMMARY, ARTIFACT_CLUSTERS
from braintumor.integrity.audit import run_audit
from braintumor.integrity.policy import IntegrityPolicy
from braintumor_zenml.materializers import ImageFolder


def audit_headline(figures: dict[str, Any]) -> dict[str, Any]:
    """The few figures a reviewer reads first (the full set stays in the report)."""
    clusters, leakage = figures["clusters"], figures["leakage"]
    return {
        "images": figures["images"]["total"],
        "duplicate clusters": clusters["clusters"],
        "redundant images": clusters["redundant_images"],
        "label-conflict clusters": figures["label_conflicts"]["clusters"],
        "Testing images with a Training twin": leakage["testing_with_training_twin"],
        "Testing images": leakage["testing_images"],
        "share of Testing leaked": leakage["share_of_testing"],
        "metadata shortcut": figures["shortcut"]["summary"],
    }


@step
def audit_data(
    images: ImageFolder, manifest: pd.DataFrame, integrity: dict[str, Any]
) -> tuple[
    Annotated[pd.DataFrame, ARTIFACT_CLUSTERS],
    Annotated[dict, ARTIFACT_AUDIT_SUMMARY],
    Annotated[HTMLString, ARTIFACT_AUDIT],
]:
    policy = IntegrityPolicy.from_dict(integrity)
    with tempfile.TemporaryDirectory(prefix="braintumor-audit-") as out_dir:
        result = run_audit(images.path, manifest, policy, Path(out_dir), html=True)
        html = result.report_html.read_text() if result.report_html else "<p>no report</p>"
    ordered = manifest.sort_values("path").reset_index(drop=True)
    clusters = pd.DataFrame({"path": ordered["path"], "cluster_id": result.duplicates.cluster_ids})
    summary = audit_headline(result.figures)
    log_metadata(metadata={"audit": summary, "audit_timings": result.timings})
    return clusters, {**summary, "figures": result.figures}, HTMLString(html)
