"""`braintumor monitor` as a CI job or a person runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from braintumor_zenml.cli import app

runner = CliRunner()


def test_drift_fails_the_job_and_writes_report_summary_and_json(
    sample_dir: Path, dark_folder: Path, tmp_path: Path
):
    summary = tmp_path / "step_summary.md"
    summary.write_text("# earlier step\n")
    args = ["monitor", "--reference", str(sample_dir / "Training"), "--current", str(dark_folder)]
    args += ["--out", str(tmp_path / "r" / "drift.html"), "--fail-on-drift"]
    args += ["--summary", str(summary), "--json", str(tmp_path / "drift.json")]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "DRIFT DETECTED" in result.output and "Traceback" not in result.output
    assert (tmp_path / "r" / "drift.html").stat().st_size > 100_000
    text = summary.read_text()
    assert text.startswith("# earlier step\n## Drift check: **DRIFT DETECTED**")
    data = json.loads((tmp_path / "drift.json").read_text())
    assert data["drifted"] is True and "width" in data["drifted_columns"]


def test_same_data_passes(sample_dir: Path, tmp_path: Path):
    training = str(sample_dir / "Training")
    result = runner.invoke(
        app,
        [
            *("monitor", "--reference", training, "--current", training, "--fail-on-drift"),
            *("--out", str(tmp_path / "drift.html")),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "no drift" in result.output


def test_the_command_s_defaults_are_the_drift_policy_s(sample_dir: Path, tmp_path: Path):
    from braintumor.monitoring.drift import DriftPolicy

    training = str(sample_dir / "Training")
    args = ["monitor", "--reference", training, "--current", training]
    result = runner.invoke(app, [*args, "--json", str(tmp_path / "d.json")])
    assert result.exit_code == 0, result.output
    policy = json.loads((tmp_path / "d.json").read_text())["policy"]
    assert policy == json.loads(DriftPolicy().model_dump_json())
    assert policy["critical_columns"] == ["confidence", "out_of_distribution"]
    # The help names the same values.
    defaults = DriftPolicy()
    help_text = runner.invoke(app, ["monitor", "--help"], env={"COLUMNS": "200"}).output
    text = " ".join(help_text.replace("│", " ").split())  # unwrapped, without Rich's box
    assert f"policy's, {defaults.drift_share}" in text and f"policy's, {defaults.min_rows}" in text
    assert "policy's, confidence and out_of_distribution" in text
    # Given values win, and an empty string means no critical column.
    given = [*args, "--critical", "", "--drift-share", "0.5", "--min-rows", "5"]
    result = runner.invoke(app, [*given, "--json", str(tmp_path / "e.json")])
    assert result.exit_code == 0, result.output
    policy = json.loads((tmp_path / "e.json").read_text())["policy"]
    assert (policy["critical_columns"], policy["drift_share"], policy["min_rows"]) == ([], 0.5, 5)


def test_drift_without_fail_on_drift_exits_zero(
    sample_dir: Path, dark_folder: Path, tmp_path: Path
):
    result = runner.invoke(
        app,
        [
            *("monitor", "--reference", str(sample_dir / "Training")),
            *("--current", str(dark_folder), "--out", str(tmp_path / "drift.html")),
        ],
    )
    assert result.exit_code == 0 and "DRIFT DETECTED" in result.output


SAME = ["--reference", "{sample}/Training", "--current", "{sample}/Training"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--current", "{sample}/Testing"], "--reference is required"),
        (
            ["--reference", "{sample}/Training", "--current", "{sample}/Testing"],
            "current data has 9 rows",
        ),
        (["--reference", "{sample}/Training", "--current", "{tmp}/nope"], "does not exist"),
        (
            [*SAME, "--since", "2026-11-20T00:00"],
            "--since needs a time zone",
        ),
        (
            [*SAME, "--drift-share", "2"],
            "drift_share",
        ),
    ],
)
def test_user_errors_are_one_line_and_exit_2(
    sample_dir: Path, tmp_path: Path, extra: list[str], message: str
):
    args = [a.format(sample=sample_dir, tmp=tmp_path) for a in extra]
    result = runner.invoke(app, ["monitor", *args, "--out", str(tmp_path / "d.html")])
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())  # rich wraps long lines
    assert output.startswith("error:") and message in output
    assert "Traceback" not in output


@pytest.mark.slow
def test_pipeline_mode_runs_the_zenml_pipeline(sample_dir: Path, dark_folder: Path, tmp_path: Path):
    result = runner.invoke(
        app,
        [
            *("monitor", "--pipeline", "--reference", str(sample_dir / "Training")),
            *("--current", str(dark_folder), "--out", str(tmp_path / "drift.html")),
            *("--model-name", "cli-monitor-test-model", "--fail-on-drift"),
        ],
    )
    assert result.exit_code == 1, result.output
    assert "ZenML run" in result.output and "DRIFT DETECTED" in result.output
    assert "intensity_mean" in (tmp_path / "drift.html").read_text()
