"""The audit on the shipped sample: files, figures, a self-contained report, the CLI entry."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from braintumor.data.manifest import ManifestError, write_manifest
from braintumor.integrity.__main__ import main
from braintumor.integrity.audit import audit_data_root, audit_folder, run_audit, summary_lines
from braintumor.integrity.dedup import ManifestHashError
from braintumor.integrity.policy import IntegrityPolicy
from braintumor.integrity.scan import FolderLayoutError, manifest_from_folder
from braintumor.integrity.shortcut import metadata_shortcut
from braintumor.integrity.splits import SPLIT_COLUMNS

PLANTED_PAIR = ("Testing/no_tumor/image(100).jpg", "Training/no_tumor/image(266).jpg")


@pytest.fixture(scope="module")
def sample_audit(sample_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("audit")
    return audit_folder(sample_dir, out, IntegrityPolicy(protocol="official"))


def test_audit_writes_splits_json_and_report(sample_audit):
    result = sample_audit
    assert {p.name for p in result.splits_csv.parent.iterdir()} >= {
        "splits.csv",
        "audit.json",
        "report.html",
        "manifest.csv",
        "rejected.csv",
    }
    splits = pd.read_csv(result.splits_csv)
    assert list(splits.columns) == list(SPLIT_COLUMNS)
    assert len(splits) == 34 and (splits["protocol"] == "official").all()
    figures = json.loads(result.audit_json.read_text())
    assert figures["protocol"] == "official"
    assert figures["exact"]["byte_identical_groups"] == 1
    assert figures["clusters"]["clusters"] == 1 and figures["clusters"]["redundant_images"] == 1
    assert figures["leakage"]["testing_with_training_twin"] == 1
    assert figures["leakage"]["by_class"]["notumor"] == {"testing": 3, "with_training_twin": 1}
    assert figures["label_conflicts"]["clusters"] == 0
    assert len(figures["rejected_files"]) == 4
    official = figures["protocols"]["official"]["official"]
    assert official["removed_with_training_twin"] == 1 and official["test_left"] == 8
    assert set(figures["protocols"]) == {"resplit", "official"}
    assert {"duplicates_s", "hashing_s", "report_s"} <= set(figures["timings"])


def test_official_split_drops_the_planted_testing_copy(sample_audit):
    splits = sample_audit.splits.set_index("path")
    testing_copy = splits.loc[PLANTED_PAIR[0]]
    assert testing_copy["status"] == "redundant" and testing_copy["split"] != "test"
    assert testing_copy["reason"].startswith("removed from Testing: same picture as")
    assert splits.loc[PLANTED_PAIR[1], "status"] == "kept"


def test_report_is_one_offline_file_with_pictures_and_figures(sample_audit):
    text = sample_audit.report_html.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert not re.search(r"(src|href)=\"(https?:)?//", text)  # nothing fetched from outside
    assert "<link" not in text and "<script" not in text
    assert text.count('src="data:image/png;base64,') >= 2  # the planted pair, side by side
    for heading in ("Exact duplicates", "Near duplicates", "Label conflicts", "Leakage", "Splits"):
        assert heading in text
    assert "Testing/no_tumor/image(100).jpg" in text
    assert "Metadata shortcut" in text


def test_cli_entry_prints_a_summary_and_fails_cleanly(sample_dir, tmp_path, capsys):
    assert main([str(sample_dir), "--out", str(tmp_path / "a"), "--no-html"]) == 0
    printed = capsys.readouterr().out
    assert "1 duplicate clusters" in printed and "1/9 Testing images" in printed
    assert not (tmp_path / "a" / "report.html").exists()
    assert main([str(tmp_path / "missing"), "--out", str(tmp_path / "b")]) == 1
    assert "is not a folder" in capsys.readouterr().err


def test_bad_inputs_get_actionable_errors(sample_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FolderLayoutError, match="no images found"):
        manifest_from_folder(tmp_path / "empty")
    manifest, _ = manifest_from_folder(sample_dir)
    with pytest.raises(ManifestHashError, match="re-run"):
        run_audit(sample_dir, manifest.drop(columns="phash_head"), out_dir=tmp_path / "x")


def test_metadata_shortcut_is_flagged_only_when_size_gives_the_label_away():
    n = 60
    sizes = np.random.default_rng(0).integers(15_000, 40_000, 2 * n)  # unrelated to the label
    frame = pd.DataFrame(
        {
            "label": ["notumor"] * n + ["glioma"] * n,
            "split": "training",
            "mode": "RGB",
            "file_size": sizes,
        }
    )
    leaky = frame.assign(width=[236] * n + [512] * n, height=[236] * n + [512] * n)
    result = metadata_shortcut(leaky)
    assert result["shortcut"] and result["scopes"]["all"]["notumor_vs_tumour"] == 1.0
    assert result["dominant_size"] in {"236x236", "512x512"}
    fair = frame.assign(width=512, height=512)
    assert not metadata_shortcut(fair)["shortcut"]


def test_audit_of_an_ingested_data_root_reads_its_manifest(sample_dir, tmp_path):
    root = tmp_path / "raw"
    shutil.copytree(sample_dir, root)
    with pytest.raises(ManifestError, match="braintumor data ingest"):
        audit_data_root(root, tmp_path / "audit")
    manifest, _ = manifest_from_folder(root)
    write_manifest(manifest, root)
    result = audit_data_root(root, tmp_path / "audit", IntegrityPolicy(), html=False)
    assert result.figures["clusters"]["clusters"] == 1 and result.report_html is None
    lines = summary_lines(result)
    assert lines[0].startswith("34 images: 1 duplicate clusters")
    assert any(line.startswith("splits (resplit): ") for line in lines)
