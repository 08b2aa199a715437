"""The training pipeline end to end on the shipped sample (smoke profile), in the session's
isolated ZenML store: run, lineage, stages as the gate decided, a rejected candidate leaves
production alone, a failed run promotes nothing, an unchanged re-run is served from cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from braintumor.constants import MODEL_NAME
from braintumor.data.ingest import ingest

pytestmark = pytest.mark.slow

SMOKE = Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml"


@pytest.fixture(scope="module")
def data_dir(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ingest(sample_dir, out_dir=tmp_path_factory.mktemp("pipeline") / "raw").out_dir


def _versions() -> dict[int, str | None]:
    from zenml.client import Client

    return {v.number: v.stage for v in Client().list_model_versions(MODEL_NAME, size=100)}


def _production() -> int | None:
    return next((n for n, stage in _versions().items() if stage == "production"), None)


@pytest.fixture(scope="module")
def first_run(data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    from pipelines.launch import launch_training

    reports = tmp_path_factory.mktemp("reports")
    outcome = launch_training(
        SMOKE, data_dir, overrides={"gate": {"promote_to": "production"}}, report_dir=reports
    )
    return outcome


def test_smoke_run_trains_gates_promotes_and_records_lineage(first_run) -> None:
    from zenml.client import Client

    outcome = first_run
    assert outcome.status == "completed"
    assert {row["backbone"] for row in outcome.leaderboard} == {"custom_cnn", "mobilenetv2"}
    assert outcome.winner in {"custom_cnn", "mobilenetv2"}
    assert outcome.decision["passed"] and outcome.stage == "production"
    version = Client().get_model_version(MODEL_NAME, outcome.model_version)
    assert version.stage == "production"
    metadata = version.run_metadata
    for key in (
        "git_commit",
        "data_hash",
        "protocol",
        "backbone",
        "preprocessing",
        "test_weighted_f1",
        "gate_summary",
        "training_config",
    ):
        assert key in metadata, key
    assert metadata["protocol"] == "resplit" and metadata["data_hash"].startswith("manifest:")
    assert metadata["backbone"] == outcome.winner
    assert metadata["test_weighted_f1"] == pytest.approx(outcome.test_metrics["weighted_f1"])
    assert version.get_artifact("best_model") is not None
    assert outcome.packaged.get("packaged") and outcome.packaged["bento_tag"], outcome.packaged
    # The guard travels with the version: its card entry, and the drift reference with the
    # model's answers on the validation images (confidence, OOD score, OOD flag).
    guard = version.get_artifact("guard").load()
    assert guard["false_review_rate"] == 0.05 and "any" in guard["validation_rates"]
    reference = version.get_artifact("answer_reference").load()
    assert {"confidence", "ood_score", "out_of_distribution", "intensity_mean"} <= set(
        reference.columns
    )
    import bentoml

    from braintumor.guard.review import GuardCard

    card = bentoml.models.get(outcome.packaged["model_tag"]).info.metadata
    assert GuardCard.model_validate(card["guard"]) == GuardCard.model_validate(guard)
    assert card["temperature"] == outcome.test_metrics["temperature"]
    html = outcome.report_path.read_text()
    assert "Leaderboard" in html and "Grad-CAM" in html and outcome.winner in html


def test_rejected_candidate_leaves_production_unchanged_and_cache_is_used(
    first_run, data_dir
) -> None:
    from zenml.client import Client

    from pipelines.launch import launch_training

    production = _production()
    assert production == first_run.model_version
    outcome = launch_training(
        SMOKE, data_dir, overrides={"gate": {"min_weighted_f1": 1.01}}, report_dir=None
    )
    assert outcome.status == "completed"
    assert not outcome.decision["passed"] and outcome.stage == "none"
    assert any("floor 1.0100" in reason for reason in outcome.decision["reasons"])
    assert outcome.decision["incumbent_version"] == str(production)  # re-scored on same images
    assert _production() == production
    assert _versions()[outcome.model_version] is None
    assert not outcome.packaged["packaged"]
    run = Client().get_pipeline_run(outcome.run_name)
    cached = {name for name, step in run.steps.items() if step.status.value == "cached"}
    assert {
        "load_data",
        "audit_data",
        "split_data",
        "train_custom_cnn",
        "train_mobilenetv2",
    } <= cached


def test_a_failed_run_promotes_nothing(first_run, data_dir) -> None:
    from pipelines.launch import launch_training

    before = _versions()
    diverging = {"backbones": ["custom_cnn"], "training": {"learning_rate": 1e12, "epochs": 2}}
    with pytest.raises(RuntimeError, match="train_custom_cnn"):
        launch_training(SMOKE, data_dir, overrides=diverging, report_dir=None)
    after = _versions()
    assert _production() == first_run.model_version
    new = set(after) - set(before)
    assert all(after[number] is None for number in new)


def test_promote_rechecks_the_gate_and_package_uses_the_store(first_run, data_dir) -> None:
    import bentoml
    from typer.testing import CliRunner

    from braintumor.cli import app
    from pipelines.launch import launch_training

    runner = CliRunner()
    staged = launch_training(SMOKE, data_dir, report_dir=None)  # cached training, gate to staging
    assert staged.stage == "staging"
    rejected = launch_training(
        SMOKE, data_dir, overrides={"gate": {"min_class_recall": 1.01}}, report_dir=None
    )
    refused = runner.invoke(app, ["promote", "--version", str(rejected.model_version)])
    assert refused.exit_code == 1 and "REJECT" in refused.output
    assert _production() == first_run.model_version

    accepted = runner.invoke(app, ["promote", "--version", str(staged.model_version)])
    assert accepted.exit_code == 0, accepted.output
    assert "PROMOTE to production" in accepted.output
    assert _production() == staged.model_version
    assert _versions()[first_run.model_version] == "archived"

    packaged = runner.invoke(app, ["package", "--stage", "production", "--no-build"])
    assert packaged.exit_code == 0, packaged.output
    model = bentoml.models.get("brain-tumor-classifier:latest")
    assert model.info.labels["model_version"] == str(staged.model_version)
    assert model.info.labels["stage"] == "production"
    missing = runner.invoke(app, ["package", "--version", "999"])
    assert missing.exit_code == 2 and "no version 999" in missing.output


@pytest.mark.browser
def test_the_dashboard_shows_the_run_dag_and_its_report(first_run) -> None:
    """`make dashboard` (pipelines/dashboard.py) in a real Chromium: the training run's DAG
    with its steps, and the run report rendered as the `run_report` artifact's visualisation."""
    import shutil
    import socket

    from zenml.client import Client

    from pipelines import dashboard

    if shutil.which("chromium") is None:
        pytest.skip("Chromium is not installed: apt-get install -y chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    run = Client().get_pipeline_run(first_run.run_name)
    dashboard.skip_onboarding()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = dashboard.start(port)
    try:
        dashboard.wait_ready(url, server)
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=shutil.which("chromium"),
                args=["--headless", "--no-sandbox", "--disable-gpu"],
            )
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(f"{url}/projects/default/runs/{run.id}", timeout=120_000)
            page.wait_for_selector(".react-flow__node", timeout=120_000)
            nodes = " ".join(n.inner_text() for n in page.query_selector_all(".react-flow__node"))
            for step in ("load_data", "audit_data", "train_custom_cnn", "gate", "report"):
                assert step in nodes
            report = page.locator(".react-flow__node-artifact:has-text('run_report') button").first
            box = report.bounding_box()
            page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            sheet = page.locator("[data-slot=sheet-content], [role=dialog]").first
            sheet.locator("[role=tab]:has-text('Visualization')").first.click()
            sheet.get_by_role("button", name="Load Preview").click()
            shown = ""
            for _ in range(120):  # the report renders in an iframe of the sheet
                shown = " ".join(f.locator("body").inner_text() for f in page.frames[1:])
                if "weighted F1" in shown:
                    break
                page.wait_for_timeout(500)
            browser.close()
        assert "weighted F1" in shown and first_run.decision["passed"]
    finally:
        server.terminate()
        server.wait(timeout=60)
