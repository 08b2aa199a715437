"""The audit on the shipped sample (ingested first): files, figures, a self-contained report,
and the `braintumor data audit` command."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from braintumor.cli import app
from braintumor.data.ingest import ingest
from braintumor.data.sources import SourceError
from braintumor.integrity.audit import run_audit
from braintumor.integrity.dedup import ManifestHashError
from braintumor.integrity.policy import IntegrityPolicy
from braintumor.integrity.shortcut import metadata_shortcut
from braintumor.integrity.splits import SPLIT_COLUMNS

# Ingestion's canonical paths of the planted byte-identical pair
# (Testing/no_tumor/image(100).jpg and Training/no_tumor/image(266).jpg in the source).
PLANTED_PAIR = ("testing/notumor/image(100).jpg", "training/notumor/image(266).jpg")

runner = CliRunner()


@pytest.fixture(scope="module")
def ingested_sample(sample_dir, tmp_path_factory):
    return ingest(sample_dir, out_dir=tmp_path_factory.mktemp("ingested") / "raw")


@pytest.fixture(scope="module")
def sample_audit(ingested_sample, tmp_path_factory):
    out = tmp_path_factory.mktemp("audit")
    return run_audit(
        ingested_sample.out_dir,
        ingested_sample.manifest,
        IntegrityPolicy(protocol="official"),
        out,
    )


def test_audit_writes_splits_json_and_report(ingested_sample, sample_audit):
    result = sample_audit
    assert {p.name for p in result.splits_csv.parent.iterdir()} == {
        "splits.csv",
        "audit.json",
        "report.html",
    }
    # the planted bad files never reach the audit: ingestion quarantined them
    quarantine = ingested_sample.quarantine
    assert len(quarantine) == 4 and quarantine["source_path"].str.contains("planted_").all()
    assert not ingested_sample.manifest["source_path"].str.contains("planted_").any()
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
    official = figures["protocols"]["official"]["official"]
    assert official["removed_with_training_twin"] == 1 and official["test_left"] == 8
    assert set(figures["protocols"]) == {"resplit", "official"}
    assert {"duplicates_s", "splits_s", "figures_s", "report_s"} <= set(figures["timings"])


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
    assert PLANTED_PAIR[0] in text
    assert "Metadata shortcut" in text


def test_bad_inputs_get_actionable_errors(ingested_sample, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no class folders found"):
        ingest(tmp_path / "empty", out_dir=tmp_path / "raw")
    manifest = ingested_sample.manifest
    with pytest.raises(ManifestHashError, match="re-run `braintumor data ingest"):
        run_audit(
            ingested_sample.out_dir, manifest.drop(columns="phash_head"), out_dir=tmp_path / "x"
        )


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


def _params(tmp_path: Path) -> Path:
    params = tmp_path / "params.yaml"
    params.write_text("integrity:\n  seed: 42\n  hamming_threshold: 8\n")
    return params


def test_data_audit_command_prints_a_summary_and_fails_cleanly(sample_dir, tmp_path):
    raw = tmp_path / "raw"
    audit = ["data", "audit", "--data", str(raw), "--params", str(_params(tmp_path))]
    # an un-ingested folder: one line saying what to run, exit 2
    shutil.copytree(sample_dir, raw)
    refused = runner.invoke(app, [*audit, "--out", str(tmp_path / "a")])
    assert refused.exit_code == 2 and "braintumor data ingest" in refused.output
    assert "Traceback" not in refused.output
    shutil.rmtree(raw)

    assert runner.invoke(app, ["data", "ingest", str(sample_dir), "--out", str(raw)]).exit_code == 0
    result = runner.invoke(app, [*audit, "--out", str(tmp_path / "a"), "--no-html"])
    assert result.exit_code == 0, result.output
    printed = " ".join(result.output.split())  # Rich wraps long lines at the terminal width
    assert "Data audit of" in printed and "(34 images)" in printed
    assert re.search(r"duplicate clusters[^\w\n]*1\b", printed)  # the table row
    assert "1/9 (11%)" in printed  # Testing images with a Training twin
    assert "splits (resplit): " in printed
    assert (tmp_path / "a" / "splits.csv").is_file()
    assert not (tmp_path / "a" / "report.html").exists()

    official = runner.invoke(app, [*audit, "--out", str(tmp_path / "b"), "--protocol", "official"])
    assert official.exit_code == 0, official.output
    assert "splits (official): " in " ".join(official.output.split())
    assert (tmp_path / "b" / "report.html").is_file()
    splits = pd.read_csv(tmp_path / "b" / "splits.csv")
    assert (splits["protocol"] == "official").all()

    bad = runner.invoke(app, [*audit, "--out", str(tmp_path / "c"), "--protocol", "nope"])
    assert bad.exit_code == 2 and "error:" in bad.output and "Traceback" not in bad.output
