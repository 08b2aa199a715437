"""The audit on the full Kaggle dataset, ingested first (skips when it is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from braintumor.data.ingest import ingest
from braintumor.integrity.audit import run_audit
from braintumor.integrity.policy import IntegrityPolicy
from braintumor.integrity.splits import make_splits
from braintumor.integrity.verify import load_gray, pair_score, verification_image

BY_EYE = Path(__file__).resolve().parents[1] / "data" / "integrity_by_eye.csv"

pytestmark = [pytest.mark.slow, pytest.mark.full_data]


@pytest.fixture(scope="module")
def full_ingested(full_dataset_dir, tmp_path_factory):
    return ingest(full_dataset_dir, out_dir=tmp_path_factory.mktemp("full") / "raw")


@pytest.fixture(scope="module")
def full_audit(full_ingested, tmp_path_factory):
    return run_audit(
        full_ingested.out_dir,
        full_ingested.manifest,
        IntegrityPolicy(),
        tmp_path_factory.mktemp("full_audit"),
    )


def test_full_audit_figures_are_written_and_plausible(full_ingested, full_audit):
    figures = json.loads(full_audit.audit_json.read_text())
    assert full_audit.report_html.stat().st_size > 100_000
    assert figures["images"]["total"] == 3264 and full_ingested.quarantine.empty
    # byte-identical groups are exact facts of the files
    assert figures["exact"]["byte_identical_groups"] == 166
    assert figures["exact"]["byte_identical_files"] == 403
    # the independent audit: ~15% redundant, 272/394 Testing with a twin, 3 label conflicts
    assert 0.12 <= figures["clusters"]["redundant_share"] <= 0.18
    assert 250 <= figures["leakage"]["testing_with_training_twin"] <= 290
    assert figures["leakage"]["by_class"]["notumor"]["with_training_twin"] == 105
    assert figures["label_conflicts"]["clusters"] == 3
    for conflict in figures["label_conflicts"]["list"]:
        assert set(conflict["labels"]) == {"glioma", "meningioma"}
    official = figures["protocols"]["official"]["official"]
    assert 60 <= official["test_left"] <= 100
    assert "notumor" not in official["test_left_by_class"]
    assert figures["shortcut"]["scopes"]["training"]["shortcut"] is True
    assert figures["shortcut"]["most_common_size"]["training"]["glioma"]["most_common"] == "512x512"


def test_official_removes_every_testing_image_with_a_training_duplicate(full_ingested, full_audit):
    manifest = pd.read_csv(full_ingested.out_dir / "manifest.csv", dtype=str)
    manifest = manifest.sort_values("path").reset_index(drop=True)  # the audit's row order
    splits = make_splits(
        manifest, full_audit.duplicates.cluster_ids, IntegrityPolicy(protocol="official")
    )
    in_training = set(splits.loc[splits["origin_split"] == "training", "cluster_id"])
    testing = splits[splits["origin_split"] == "testing"]
    twins = testing[testing["cluster_id"].isin(in_training)]
    assert len(twins) >= 250
    assert not ((twins["split"] == "test") & (twins["status"] == "kept")).any()
    test = splits[(splits["split"] == "test") & (splits["status"] == "kept")]
    assert (test["origin_split"] == "testing").all()
    assert test["cluster_id"].is_unique
    assert not set(test["cluster_id"]) & in_training


def test_resplit_keeps_clusters_whole(full_audit):
    splits = full_audit.splits
    usable = splits[splits["status"] != "quarantined"]
    assert (usable.groupby("cluster_id")["split"].nunique() == 1).all()
    kept = splits[splits["status"] == "kept"]
    assert kept["cluster_id"].is_unique
    shares = kept.groupby("label")["split"].value_counts(normalize=True).unstack()
    assert ((shares["test"] - 0.15).abs() < 0.01).all()


def test_verifier_agrees_with_pairs_judged_by_eye(full_dataset_dir):
    judged = pd.read_csv(BY_EYE, comment="#")
    assert len(judged) == 100
    decisions = []
    for row in judged.itertuples():
        a = verification_image(load_gray(full_dataset_dir / row.path_a))
        b = verification_image(load_gray(full_dataset_dir / row.path_b))
        decisions.append(pair_score(a, b)[0] >= IntegrityPolicy().min_correlation)
    judged["verified"] = decisions
    false_merges = judged[(judged["by_eye"] == "different") & judged["verified"]]
    missed = judged[(judged["by_eye"] == "same") & ~judged["verified"]]
    assert false_merges.empty, false_merges[["path_a", "path_b"]]
    assert missed.empty, missed[["path_a", "path_b"]]
