"""Which data a run used: DVC hash when in sync, refusal when not, manifest hash without DVC."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from braintumor.data.ingest import ingest
from braintumor.data.versioning import DataOutOfSyncError, data_version


def test_without_dvc_the_manifest_hash_identifies_the_data(
    sample_dir: Path, tmp_path: Path
) -> None:
    first = data_version(ingest(sample_dir, out_dir=tmp_path / "a" / "raw").out_dir)
    second = data_version(ingest(sample_dir, out_dir=tmp_path / "b" / "raw").out_dir)
    assert first.dvc_md5 is None and first.key.startswith("manifest:")
    assert first == second  # same content, same version, wherever it lives
    with pytest.raises(FileNotFoundError, match="ingest"):
        data_version(tmp_path / "nothing")


@pytest.mark.slow
def test_dvc_tracked_folder_gives_its_dvc_hash_and_refuses_drift(
    sample_dir: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    def run(*args: str) -> None:
        subprocess.run(args, cwd=tmp_path, env=env, check=True, capture_output=True)

    run("git", "init", "-q")
    run(sys.executable, "-m", "dvc", "init", "-q")
    ingest(sample_dir, out_dir=tmp_path / "data" / "raw")
    run(sys.executable, "-m", "dvc", "add", "-q", "data/raw")
    version = data_version(tmp_path / "data" / "raw")
    assert version.dvc_md5 and version.dvc_md5.endswith(".dir")
    assert version.key == f"dvc:{version.dvc_md5}"
    (tmp_path / "data" / "raw" / "extra.txt").write_text("changed after dvc add")
    with pytest.raises(DataOutOfSyncError, match="dvc add"):
        data_version(tmp_path / "data" / "raw")
    # The CLI says the same in one line (exit 2), no traceback.
    from typer.testing import CliRunner

    from braintumor_zenml.cli import app

    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path / "data" / "raw")])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if "error:" in line]
    assert len(errors) == 1 and "has changed since DVC last recorded it" in errors[0]
    assert "Traceback" not in result.output
