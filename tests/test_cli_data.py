"""The `braintumor data` commands as a user runs them."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from braintumor.cli import app

runner = CliRunner()


def test_ingest_prints_counts_and_quarantine(sample_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "ingest", str(sample_dir), "--out", str(tmp_path / "raw")])
    assert result.exit_code == 0, result.output
    assert "training" in result.output and "testing" in result.output
    assert "quarantined 4 file(s)" in result.output and "truncated: 1" in result.output


def test_ingest_reads_the_source_from_the_environment(sample_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["data", "ingest", "--out", str(tmp_path / "raw")],
        env={"BRAINTUMOR_DATA_SOURCE": str(sample_dir)},
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "raw" / "manifest.csv").is_file()


def test_bad_source_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["data", "ingest", str(tmp_path / "nope"), "--out", str(tmp_path / "raw")]
    )
    assert result.exit_code == 2
    assert "error:" in result.output and "does not exist" in result.output
    assert "Traceback" not in result.output


def test_checksum_failure_stops_unless_allowed(sample_dir: Path, tmp_path: Path) -> None:
    args = [
        "data",
        "ingest",
        str(sample_dir),
        "--out",
        str(tmp_path / "raw"),
        "--checksums",
        "sartaj-3ea9f4e",
    ]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 3 and "checksum check failed" in refused.output
    allowed = runner.invoke(app, [*args, "--allow-unverified"])
    assert allowed.exit_code == 0


def test_clahe_command_writes_the_derived_set(sample_dir: Path, tmp_path: Path) -> None:
    assert (
        runner.invoke(
            app, ["data", "ingest", str(sample_dir), "--out", str(tmp_path / "raw")]
        ).exit_code
        == 0
    )
    params = tmp_path / "params.yaml"
    params.write_text(
        "clahe:\n  clip_limit: 2.0\n  tile_grid: 8\n  image_size: 64\n  grayscale: true\n"
    )
    result = runner.invoke(
        app,
        [
            "data",
            "clahe",
            "--raw",
            str(tmp_path / "raw"),
            "--out",
            str(tmp_path / "clahe"),
            "--params",
            str(params),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "wrote 34 CLAHE images" in result.output
    assert len(list((tmp_path / "clahe").rglob("*.png"))) == 34


def test_training_without_tensorflow_names_the_extra_to_install(
    sample_dir: Path, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    code = (
        "import sys; sys.modules['tensorflow'] = None\n"  # as if the cpu extra were missing
        "from braintumor_zenml.cli import app\n"
        f"app(['train', '--config', 'configs/smoke.yaml', '--data', {str(sample_dir)!r}])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": f"{root / 'src'}:{root}"},
        timeout=300,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "tensorflow is not installed" in output and "pip install -e '.[cpu]'" in output
    assert "Traceback" not in output and len(output.strip().splitlines()) == 1
