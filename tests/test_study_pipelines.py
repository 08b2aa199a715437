"""The tuning and cross-validation pipelines on the shipped sample, in the session's isolated
ZenML store: a 2-trial study (1 epoch each, the smoke CNN) run as two resumed sessions, that
never sees a test image and whose best trial `braintumor train` accepts; a 2-fold CV run with
grouped and ungrouped figures; the commands' user errors as one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from braintumor.constants import CV_MODEL_NAME
from braintumor.data.ingest import ingest
from braintumor_zenml.cli import app
from braintumor_zenml.launch import read_run_config

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"
PARAMS = ROOT / "params.yaml"


@pytest.fixture(scope="module")
def data_dir(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ingest(sample_dir, out_dir=tmp_path_factory.mktemp("studies") / "raw").out_dir


def _tuning_config(folder: Path) -> Path:
    document = yaml.safe_load(SMOKE.read_text())
    document["parameters"]["run"]["tuning"] = {
        "backbone": "custom_cnn",
        "space": {
            "learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
            "head.dropout": {"type": "float", "low": 0.0, "high": 0.5},
            "cnn.filters": {"type": "categorical", "choices": [[8, 16], [4, 8]]},
        },
    }
    path = folder / "tune-smoke.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def _latest_run(pipeline: str):
    from zenml.client import Client

    runs = Client().list_pipeline_runs(pipeline=pipeline, sort_by="desc:created", size=1)
    return Client().get_pipeline_run(runs[0].id)


def _input(step, name: str):
    artifact = step.inputs[name]
    return (artifact[0] if isinstance(artifact, list) else artifact).load()


def test_a_tuning_study_resumes_never_sees_the_test_split_and_yields_a_train_config(
    data_dir: Path, tmp_path: Path
) -> None:
    from zenml.client import Client

    from pipelines.tuning import STUDY_FILE, launch_tuning

    config = _tuning_config(tmp_path)
    best_path = tmp_path / "best.yaml"
    first = launch_tuning(config, 1, data_dir, PARAMS, out=best_path)
    assert first.status == "completed" and first.study["new_trials"] == 1
    # Same study name and storage: the second session (the command) continues the first.
    args = ["--config", str(config), "--data", str(data_dir), "--params", str(PARAMS)]
    result = CliRunner().invoke(app, ["tune", *args, "--trials", "1", "--out", str(best_path)])
    assert result.exit_code == 0, result.output
    assert f"best run config: {best_path}" in result.output
    assert "1 new trial(s); best: trial" in result.output
    run = _latest_run("tuning_pipeline")
    second = run.steps["tune_trials"].outputs["study_summary"][0].load()
    assert second["study_name"] == "tune-smoke" and second["new_trials"] == 1
    assert [t["number"] for t in second["trials"]] == [0, 1]
    assert [t["state"] for t in second["trials"]] == ["COMPLETE", "COMPLETE"]
    assert second["trials"][0]["values"] != second["trials"][1]["values"]
    store = Path(str(Client().zen_store.config.url).removeprefix("sqlite:///"))
    assert (store.parent / STUDY_FILE).is_file()
    assert second["storage"] == f"sqlite:///{store.parent / STUDY_FILE}"

    # The step that trains the trials gets the train/val rows and their images, nothing else.
    step = run.steps["tune_trials"]
    assert set(step.inputs) == {"images", "rows"}
    splits = run.steps["split_data"].outputs["splits"][0].load()
    test_paths = set(splits.loc[splits["split"] == "test", "path"])
    assert test_paths, "the split must have a test part for this check to mean anything"
    rows = _input(step, "rows")
    assert set(rows["split"]) == {"train", "val"} and not test_paths & set(rows["path"])
    folder = _input(step, "images").path
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert files - {"manifest.csv", ".complete"} == set(rows["path"])

    # The best trial, as a run config that `braintumor train` validates and accepts.
    best = second["best"]
    assert best["value"] == max(t["value"] for t in second["trials"])
    assert "The test split was not used" in best_path.read_text()
    _, tuned = read_run_config(best_path)
    assert tuned.backbones == ["custom_cnn"] and tuned.tuning is None
    training = tuned.training_config("custom_cnn")
    assert training.learning_rate == pytest.approx(best["values"]["learning_rate"])
    assert list(training.cnn.filters) == best["values"]["cnn.filters"]


def test_cross_validation_reports_grouped_and_ungrouped_figures(
    data_dir: Path, tmp_path: Path
) -> None:

    args = ["--config", str(SMOKE), "--data", str(data_dir), "--params", str(PARAMS)]
    result = CliRunner().invoke(app, ["cv", *args, "--folds", "2", "--report-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "custom_cnn: 2-fold cross-validation" in result.output
    run = _latest_run("crossval_pipeline")
    assert run.status.value == "completed"
    summary = run.steps["summarize_cv"].outputs["cv_summary"][0].load()
    assert summary["backbone"] == "custom_cnn" and summary["folds"] == 2
    grouped, ungrouped = summary["schemes"]["grouped"], summary["schemes"]["ungrouped"]
    for scheme in (grouped, ungrouped):
        assert scheme["folds"] == 2 and len(scheme["weighted_f1"]["values"]) == 2
        assert 0.0 <= scheme["weighted_f1"]["mean"] <= 1.0 and scheme["weighted_f1"]["std"] >= 0
        assert set(scheme["recall"]) == {"glioma", "meningioma", "notumor", "pituitary"}
    # Ungrouped holds every copy; grouped only the kept images.
    assert ungrouped["test_images"] >= grouped["test_images"] > 0
    assert summary["gap"]["weighted_f1"] == pytest.approx(
        ungrouped["weighted_f1"]["mean"] - grouped["weighted_f1"]["mean"]
    )
    version = run.model_version  # of the cross-validation model, not of the served one
    assert version is not None and version.model.name == CV_MODEL_NAME
    for metadata in (run.run_metadata, version.run_metadata):
        assert metadata["cv_grouped_weighted_f1_mean"] == pytest.approx(
            grouped["weighted_f1"]["mean"]
        )
        assert metadata["cv_ungrouped_macro_f1_std"] == pytest.approx(ungrouped["macro_f1"]["std"])
        assert metadata["cv"]["gap"]["weighted_f1"] == pytest.approx(summary["gap"]["weighted_f1"])
    html = (tmp_path / f"{run.name}-cv.html").read_text()
    assert "ungrouped" in html and f"{grouped['weighted_f1']['mean']:.4f} ±" in html


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["cv", "--config", "missing.yaml"], "run config missing.yaml not found"),
        (["cv", "--config", str(SMOKE), "--folds", "1"], "--folds must be a whole number of at"),
        (["cv", "--config", str(SMOKE), "--backbone", "vgg16"], "--backbone vgg16 is not among"),
        (["tune", "--config", str(SMOKE)], "has no `tuning:` block"),
        (["tune", "--config", "missing.yaml"], "run config missing.yaml not found"),
    ],
)
def test_command_errors_are_one_line(args: list[str], message: str) -> None:
    _assert_one_line_error(CliRunner().invoke(app, args), message)


def test_tune_refuses_zero_trials_in_one_line(tmp_path: Path) -> None:
    config = _tuning_config(tmp_path)
    result = CliRunner().invoke(app, ["tune", "--config", str(config), "--trials", "0"])
    _assert_one_line_error(result, "--trials must be at least 1")


def _assert_one_line_error(result, message: str) -> None:
    """Exit code 2 and the error as the last line, alone (ZenML may log before it)."""
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("error: ") and message in lines[-1], result.output
    assert "Traceback" not in result.output and sum("error" in line for line in lines) == 1
