"""Adding labelled batches to data/raw: the `source` column, idempotence, errors that write
nothing, quarantine, the DVC version, and the `data add` / `data sources` commands."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from braintumor.constants import DEFAULT_SOURCE_NAME
from braintumor.data.batches import add_batch, read_quarantine, source_counts
from braintumor.data.ingest import ingest
from braintumor.data.manifest import read_manifest
from braintumor.data.sources import SourceError, UnknownClassError, check_source_name
from braintumor.data.versioning import DvcError, dvc_add
from braintumor_zenml.cli import app

runner = CliRunner()


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def raw(sample_dir: Path, tmp_path: Path) -> Path:
    """The sample ingested as the Kaggle source, in `<tmp>/data/raw`."""
    return ingest(sample_dir, out_dir=tmp_path / "data" / "raw").out_dir


@pytest.fixture
def batch(sample_dir: Path, tmp_path: Path) -> Path:
    """A flat `<class>/` batch: two classes of the sample's Testing split, one corrupt file."""
    root = tmp_path / "batch"
    shutil.copytree(sample_dir / "Testing" / "glioma_tumor", root / "glioma")
    shutil.copytree(sample_dir / "Testing" / "no_tumor", root / "no_tumor")
    (root / "glioma" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    return root


def test_ingest_names_every_image_kaggle_by_default(raw: Path) -> None:
    manifest = read_manifest(raw)
    assert (manifest["source"] == DEFAULT_SOURCE_NAME).all()
    assert (read_quarantine(raw.parent)["source"] == DEFAULT_SOURCE_NAME).all()


def test_a_manifest_written_before_sources_reads_as_kaggle(raw: Path) -> None:
    target = raw / "manifest.csv"
    new = pd.read_csv(target, dtype=str, keep_default_na=False)
    old = new.drop(columns=["source"]).rename(columns={"source_path": "source"})
    old.to_csv(target, index=False)
    manifest = read_manifest(raw)
    assert (manifest["source"] == "kaggle").all()
    assert manifest["source_path"].tolist() == new["source_path"].tolist()


def test_adding_a_batch_appends_it_under_its_name(raw: Path, batch: Path) -> None:
    before = read_manifest(raw)
    result = add_batch(batch, "mine", raw_dir=raw)
    manifest = read_manifest(raw)
    assert len(manifest) == len(before) + 5 and len(result.added) == 5
    added = manifest[manifest["source"] == "mine"]
    assert added["path"].str.startswith(("mine/unsplit/glioma/", "mine/unsplit/notumor/")).all()
    assert set(added["split"]) == {"unsplit"}
    for row in added.itertuples():  # the bytes are the batch's, unchanged
        assert (raw / row.path).read_bytes() == (batch / row.source_path).read_bytes()
    # the earlier rows are untouched
    pd.testing.assert_frame_equal(
        manifest[manifest["source"] == "kaggle"].reset_index(drop=True), before
    )
    quarantine = read_quarantine(raw.parent)
    mine = quarantine[quarantine["source"] == "mine"]
    assert mine["source_path"].tolist() == ["glioma/broken.jpg"]
    assert (raw.parent / mine["quarantine_path"].iloc[0]).read_bytes().startswith(b"\xff\xd8")
    assert len(quarantine) == 5  # the sample's 4 planted files are still listed
    counts = source_counts(manifest)
    assert counts.loc["mine"].to_dict() == {
        "glioma": 2,
        "meningioma": 0,
        "notumor": 3,
        "pituitary": 0,
        "total": 5,
    }
    assert counts.loc["kaggle", "total"] == 34


def test_adding_the_same_batch_twice_changes_nothing(raw: Path, batch: Path) -> None:
    add_batch(batch, "mine", raw_dir=raw)
    before = _snapshot(raw.parent)
    again = add_batch(batch, "mine", raw_dir=raw)
    assert not again.changed and again.already_present == 6
    assert _snapshot(raw.parent) == before


def test_the_ingested_set_added_again_under_its_name_is_nothing_new(
    raw: Path, sample_dir: Path
) -> None:
    before = _snapshot(raw.parent)
    again = add_batch(sample_dir, DEFAULT_SOURCE_NAME, raw_dir=raw)
    assert not again.changed and again.already_present == 38  # 34 images + 4 quarantined
    assert _snapshot(raw.parent) == before


def test_a_grown_batch_adds_only_its_new_files(raw: Path, batch: Path, sample_dir: Path) -> None:
    add_batch(batch, "mine", raw_dir=raw)
    shutil.copytree(sample_dir / "Testing" / "pituitary_tumor", batch / "pituitary")
    grown = add_batch(batch, "mine", raw_dir=raw)
    assert len(grown.added) == 2 and grown.already_present == 6
    assert set(grown.added["label"]) == {"pituitary"}


def test_unknown_classes_are_an_error_and_nothing_is_written(raw: Path, batch: Path) -> None:
    (batch / "astrocytoma").mkdir()
    shutil.copy(batch / "glioma" / "broken.jpg", batch / "astrocytoma" / "a.jpg")
    before = _snapshot(raw.parent)
    with pytest.raises(UnknownClassError, match="astrocytoma"):
        add_batch(batch, "mine", raw_dir=raw)
    assert _snapshot(raw.parent) == before


def test_a_changed_file_is_an_error_and_nothing_is_written(raw: Path, batch: Path) -> None:
    add_batch(batch, "mine", raw_dir=raw)
    first = sorted((batch / "no_tumor").iterdir())[0]
    first.write_bytes((batch / "glioma" / sorted(os.listdir(batch / "glioma"))[0]).read_bytes())
    shutil.copytree(batch / "glioma", batch / "pituitary")  # new files are refused too
    before = _snapshot(raw.parent)
    with pytest.raises(SourceError, match="other content at the same path"):
        add_batch(batch, "mine", raw_dir=raw)
    assert _snapshot(raw.parent) == before


def test_a_first_batch_creates_the_data_folder(batch: Path, tmp_path: Path) -> None:
    result = add_batch(batch, "mine", raw_dir=tmp_path / "fresh" / "raw")
    assert len(read_manifest(tmp_path / "fresh" / "raw")) == 5 == len(result.manifest)


@pytest.mark.parametrize("name", ["", "Has Space", "training", "unsplit", "-x", "a/b"])
def test_bad_source_names_are_refused(name: str) -> None:
    with pytest.raises(SourceError):
        check_source_name(name)


def test_dvc_add_says_when_the_folder_is_not_in_a_dvc_repository(raw: Path) -> None:
    with pytest.raises(DvcError, match="not inside a DVC repository"):
        dvc_add(raw)


def test_dvc_add_says_when_dvc_is_missing(raw: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import braintumor.data.versioning as versioning

    monkeypatch.setattr(versioning.shutil, "which", lambda name: None)
    monkeypatch.setattr(versioning.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DvcError, match="dvc is not on PATH"):
        dvc_add(raw)


@pytest.mark.slow
def test_dvc_add_records_a_new_version(raw: Path, batch: Path) -> None:
    project = raw.parent.parent
    for args in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(args, cwd=project, check=True, capture_output=True)
    first = dvc_add(raw).read_text()
    add_batch(batch, "mine", raw_dir=raw)
    second = dvc_add(raw).read_text()
    assert first != second and "md5" in second
    assert dvc_add(raw).read_text() == second  # unchanged data, unchanged version


def test_cli_add_and_sources(raw: Path, batch: Path) -> None:
    args = ["data", "add", str(batch), "--source", "mine", "--data", str(raw), "--no-dvc"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "quarantined 1 file(s)" in first.output and "now holds 39 images" in first.output
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "nothing to add" in again.output
    listed = runner.invoke(app, ["data", "sources", "--data", str(raw)])
    assert listed.exit_code == 0, listed.output
    lines = {line.split()[1]: line for line in listed.output.splitlines() if "│" in line}
    assert lines["mine"].split("│")[-2].strip() == "5"
    assert lines["kaggle"].split("│")[-2].strip() == "34"


def test_cli_user_errors_are_one_line(raw: Path, batch: Path) -> None:
    (batch / "astrocytoma").mkdir()
    result = runner.invoke(app, ["data", "add", str(batch), "--source", "mine", "--data", str(raw)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "error:" in result.output and "astrocytoma" in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 2  # what it does, then the error


def test_cli_add_without_dvc_repository_says_so(raw: Path, batch: Path) -> None:
    result = runner.invoke(app, ["data", "add", str(batch), "--source", "mine", "--data", str(raw)])
    assert result.exit_code == 2
    assert "not inside a DVC repository" in result.output
    assert len(read_manifest(raw)) == 39  # the data is added; only the version is missing


def test_cli_audit_and_train_hold_out_a_source(raw: Path, batch: Path, tmp_path: Path) -> None:
    add_batch(batch, "mine", raw_dir=raw)
    out = str(tmp_path / "audit")
    args = ["data", "audit", "--data", str(raw), "--out", out, "--no-html", "--holdout", "mine"]
    audit = runner.invoke(app, args)
    assert audit.exit_code == 0, audit.output
    assert "splits (leave-source-out)" in audit.output
    splits = pd.read_csv(tmp_path / "audit" / "splits.csv", dtype=str, keep_default_na=False)
    mine = splits[splits["source"] == "mine"]
    # The batch is the sample's Testing images, already in kaggle: all are removed as copies.
    assert len(mine) and (mine["status"] == "redundant").all()
    assert mine["reason"].str.startswith("removed from held-out source mine").all()
    assert not (splits["split"] == "test").any()
    args = ["train", "--config", "configs/smoke.yaml", "--data", str(raw), "--holdout", "nope"]
    unknown = runner.invoke(app, [*args, "--protocol", "leave-source-out"])
    assert unknown.exit_code == 2, unknown.output
    assert "held-out source 'nope'" in unknown.output and "kaggle, mine" in unknown.output
    assert "Traceback" not in unknown.output
    missing = runner.invoke(app, ["train", "--data", str(raw), "--protocol", "leave-source-out"])
    assert missing.exit_code == 2 and "needs the source to hold out" in missing.output
