"""The audit across sources: planted cross-source copies (re-encoded JPEG, resized, mirrored)
are found, counted per pair of sources, shown in the report, and kept in one split."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from braintumor.data.batches import add_batch
from braintumor.data.ingest import ingest
from braintumor.data.manifest import read_manifest
from braintumor.imaging import decode_image
from braintumor.integrity.audit import run_audit
from braintumor.integrity.dedup import Duplicates, find_duplicates
from braintumor.integrity.figures import source_figures
from braintumor.integrity.policy import IntegrityPolicy
from braintumor.integrity.splits import QUARANTINED, make_splits

# Copies planted in a second source: (original in the sample, class folder, how it is copied).
PLANTED = {
    "glioma/jpeg70.jpg": ("Training/glioma_tumor/gg (242).jpg", "jpeg70"),
    "no_tumor/mirrored.png": ("Training/no_tumor/image (24).jpg", "mirrored"),
    "pituitary/half.png": ("Training/pituitary_tumor/p (33).jpg", "half"),
    # the same picture under another label: a label conflict across sources
    "glioma/conflict.png": ("Training/meningioma_tumor/m (189).jpg", "mirrored"),
}


def _copy(gray: np.ndarray, how: str) -> np.ndarray:
    if how == "jpeg70":
        ok, data = cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_QUALITY, 70])
        assert ok
        return decode_image(data.tobytes()).pixels
    if how == "half":
        return cv2.resize(gray, (gray.shape[1] // 2, gray.shape[0] // 2), cv2.INTER_AREA)
    return np.ascontiguousarray(gray[:, ::-1])


@pytest.fixture(scope="module")
def two_sources(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data/raw holding the sample (kaggle) and a batch `other` of planted copies."""
    root = tmp_path_factory.mktemp("sources")
    raw = ingest(sample_dir, out_dir=root / "data" / "raw").out_dir
    batch = root / "batch"
    for target, (original, how) in PLANTED.items():
        gray = decode_image((sample_dir / original).read_bytes()).pixels
        (batch / target).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(batch / target), _copy(gray, how))
    add_batch(batch, "other", raw_dir=raw)
    shutil.rmtree(batch)
    return raw


@pytest.fixture(scope="module")
def found(two_sources: Path):
    manifest = read_manifest(two_sources)
    return manifest, find_duplicates(two_sources, manifest, IntegrityPolicy())


def test_planted_copies_cluster_with_their_originals_across_sources(found) -> None:
    manifest, duplicates = found
    cluster_of = dict(zip(manifest["source_path"], duplicates.cluster_ids, strict=True))
    for copy, (original, _) in PLANTED.items():
        assert cluster_of[copy] == cluster_of[original], copy


def test_source_figures_count_shared_unique_and_conflicts(found) -> None:
    manifest, duplicates = found
    figures = source_figures(manifest, duplicates)
    assert figures["sources"] == ["kaggle", "other"]
    assert figures["shared_images"] == {
        "kaggle": {"kaggle": 2, "other": 4},  # 2: the sample's planted byte-identical twins
        "other": {"kaggle": 4, "other": 0},
    }
    assert figures["shared_pictures"] == {"kaggle": {"other": 4}, "other": {"kaggle": 4}}
    assert figures["unique_images"] == {"kaggle": 30, "other": 0}
    assert figures["pairs_across_sources"]["near_mirrored"] == 2
    assert figures["pairs_across_sources"]["near"] == 4
    conflicts = figures["label_conflicts"]
    assert conflicts["clusters"] == 1 and conflicts["images"] == 2
    assert conflicts["list"][0]["labels_by_source"] == {
        "kaggle": {"meningioma": 1},
        "other": {"glioma": 1},
    }


def test_no_copy_of_a_test_image_is_in_training_whatever_its_source(found) -> None:
    manifest, duplicates = found
    cross = source_figures(manifest, duplicates)["clusters_spanning_sources"]
    assert cross == 4
    frame = manifest.assign(cluster_id=duplicates.cluster_ids)
    spanning = frame.groupby("cluster_id")["source"].nunique()
    spanning = set(spanning.index[spanning > 1])
    cross_source_tested = 0
    for seed in range(12):
        for protocol in ("resplit", "official"):
            policy = IntegrityPolicy(seed=seed, protocol=protocol)
            splits = make_splits(manifest, duplicates.cluster_ids, policy)
            used = splits[splits["status"] != QUARANTINED]
            assert (used.groupby("cluster_id")["split"].nunique() == 1).all()
            tested = used[(used["split"] == "test") & used["cluster_id"].isin(spanning)]
            cross_source_tested += tested["cluster_id"].nunique()
            assert set(splits["source"]) == {"kaggle", "other"}
    assert cross_source_tested > 0  # the check above did meet cross-source test clusters


def test_audit_json_and_report_hold_the_source_tables(two_sources: Path, tmp_path: Path) -> None:
    manifest = read_manifest(two_sources)
    result = run_audit(two_sources, manifest, IntegrityPolicy(), tmp_path / "audit")
    figures = json.loads(result.audit_json.read_text())["sources"]
    assert figures["shared_images"]["other"]["kaggle"] == 4
    assert set(figures["kept_by_source_split"]) == {"kaggle", "other"}
    text = result.report_html.read_text()
    assert "<h2>Sources</h2>" in text and "unique to it" in text
    assert "mirrored copy across sources" in text
    assert "other/unsplit/notumor/mirrored.png" in text


def test_source_figures_on_synthetic_clusters() -> None:
    manifest = pd.DataFrame(
        {
            "path": [f"p{i}" for i in range(6)],
            "label": ["glioma"] * 6,
            "source": ["a", "a", "b", "b", "c", "a"],
        }
    )
    pairs = pd.DataFrame(
        {"i": [0, 0, 1], "j": [2, 4, 5], "kind": ["near", "exact", "near"]}
    ).assign(mirrored=[True, False, False])
    duplicates = Duplicates(np.array([0, 1, 0, 2, 0, 1]), pairs, pairs.iloc[0:0])
    figures = source_figures(manifest, duplicates)
    assert figures["shared_images"] == {
        "a": {"a": 2, "b": 1, "c": 1},
        "b": {"a": 1, "b": 0, "c": 1},
        "c": {"a": 1, "b": 1, "c": 0},
    }
    assert figures["unique_images"] == {"a": 2, "b": 1, "c": 0}
    assert figures["pairs_across_sources"] == {"exact": 1, "near": 1, "near_mirrored": 1}
    # no source column: one source, the default
    assert source_figures(manifest.drop(columns="source"), duplicates)["sources"] == ["kaggle"]


def test_leave_source_out_audit_reports_the_held_out_source(two_sources: Path, tmp_path: Path):
    manifest = read_manifest(two_sources)
    policy = IntegrityPolicy(protocol="leave-source-out", holdout_source="other")
    result = run_audit(two_sources, manifest, policy, tmp_path / "audit")
    held = json.loads(result.audit_json.read_text())["protocols"]["leave-source-out"]
    figures = held["leave_source_out"]
    # all four planted images are copies of kaggle images: nothing of `other` is left to test
    assert figures["holdout_source"] == "other" and figures["holdout_images"] == 4
    assert figures["removed_with_copy_in_training_sources"] + figures["quarantined"] == 4
    assert figures["test_left"] == 0 and figures["training_sources"] == ["kaggle"]
    assert set(result.splits["protocol"]) == {"leave-source-out"}
    assert "Protocol leave-source-out: of 4 images of other" in result.report_html.read_text()
