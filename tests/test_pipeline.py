"""The training pipeline end to end on the shipped sample (smoke profile), in the session's
isolated ZenML store: run, lineage, stages as the gate decided, a rejected candidate leaves
production alone, a failed run promotes nothing, an unchanged re-run is served from cache and
moves no stage, `braintumor promote` decides with the repository's policy, `braintumor
rollback` puts the previous production version back and packages it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from braintumor.constants import MODEL_NAME
from braintumor.data.ingest import ingest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"


@pytest.fixture(scope="module")
def data_dir(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ingest(sample_dir, out_dir=tmp_path_factory.mktemp("pipeline") / "raw").out_dir


def _params(folder: Path, **gate: float) -> Path:
    """The repository's params.yaml with another promotion policy: the repository of a test."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["gate"] = {**params["gate"], **gate}
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.fixture(scope="module")
def lenient(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository whose policy a one-epoch smoke model passes."""
    folder = tmp_path_factory.mktemp("lenient")
    return _params(
        folder,
        min_weighted_f1=0.0,
        min_class_recall=0.0,
        max_regression=1.0,
        min_comparison_images=1,  # the sample's test split is small
    )


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository whose policy no model passes."""
    return _params(tmp_path_factory.mktemp("strict"), min_weighted_f1=1.01)


def _step_statuses(run_name: str) -> dict[str, str]:
    from zenml.client import Client

    run = Client().get_pipeline_run(run_name)
    return {name: step.status.value for name, step in run.steps.items()}


def _metadata(number: int) -> dict:
    from zenml.client import Client

    return dict(Client().get_model_version(MODEL_NAME, number).run_metadata)


def _versions() -> dict[int, str | None]:
    from zenml.client import Client

    return {v.number: v.stage for v in Client().list_model_versions(MODEL_NAME, size=100)}


def _production() -> int | None:
    return next((n for n, stage in _versions().items() if stage == "production"), None)


@pytest.fixture(scope="module")
def first_run(data_dir: Path, lenient: Path, tmp_path_factory: pytest.TempPathFactory):
    from braintumor_zenml.launch import launch_training

    reports = tmp_path_factory.mktemp("reports")
    # Straight to production: allowed under the repository's own policy only.
    gate = {"promote_to": "production", "policy_overrides": {}}
    return launch_training(SMOKE, data_dir, lenient, overrides={"gate": gate}, report_dir=reports)


def test_smoke_run_trains_gates_promotes_and_records_lineage(first_run) -> None:
    from zenml.client import Client

    outcome = first_run
    assert outcome.status == "completed"
    assert {row["backbone"] for row in outcome.leaderboard} == {"custom_cnn", "mobilenetv2"}
    assert outcome.winner in {"custom_cnn", "mobilenetv2"}
    assert outcome.decision["passed"] and outcome.stage == "production"
    policy = outcome.decision["policy"]
    assert policy["source"].endswith("params.yaml:gate") and policy["repository"]
    assert f"(policy {policy['name']})" in outcome.decision["summary"]
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
        "production_since",
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
    # One calibration, fitted by calibrate_winner: the card carries what it fitted (the
    # smoke profile fits no class offsets).
    calibration = version.get_artifact("calibration").load()
    assert calibration["temperature"] == card["temperature"] and "class_offsets" not in card
    assert calibration["class_offsets"] is None and calibration["val_images"] > 0
    # Per source next to the pooled figures: in the card (hence /metadata) and the version.
    assert set(card["metrics_by_source"]) == {"kaggle"}
    assert card["metrics_by_source"]["kaggle"]["images"] == outcome.test_metrics["n"]
    assert metadata["test_by_source"]["kaggle"]["images"] == outcome.test_metrics["n"]
    seen = metadata["data"]  # which sources and how many images the run saw
    assert seen["images_by_source"] == {"kaggle": seen["images"]} and seen["images"] > 0
    html = outcome.report_path.read_text()
    assert "Leaderboard" in html and "Grad-CAM" in html and outcome.winner in html


def test_rejected_candidate_leaves_production_unchanged_and_cache_is_used(
    first_run, data_dir, lenient
) -> None:
    from zenml.client import Client

    from braintumor_zenml.launch import launch_training

    production = _production()
    assert production == first_run.model_version
    tight = {"gate": {"policy_overrides": {"min_weighted_f1": 1.01}}}
    outcome = launch_training(SMOKE, data_dir, lenient, overrides=tight, report_dir=None)
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
    assert run.steps["promote"].status.value == "completed"  # never from the cache


def test_other_package_settings_leave_every_model_step_cached(first_run, data_dir, lenient) -> None:
    """Each step gets only its slice of the run config: a change to the package settings
    re-runs none of the steps that train, pick, calibrate, evaluate or guard the model."""
    from braintumor_zenml.launch import launch_training

    other = {"package": {"build_bento": False}}
    outcome = launch_training(SMOKE, data_dir, lenient, overrides=other, report_dir=None)
    assert outcome.status == "completed"
    statuses = _step_statuses(outcome.run_name)
    per_backbone = {name for name in statuses if name.startswith(("train_", "evaluate_"))}
    model_steps = per_backbone | {
        "plan_balance",
        "select_best",
        "calibrate_winner",
        "evaluate_winner",
        "fit_guard",
    }
    assert len(per_backbone) == 5  # two backbones, and evaluate_winner
    assert {name: statuses[name] for name in model_steps} == dict.fromkeys(model_steps, "cached")


def test_an_unchanged_rerun_moves_no_stage_and_names_the_same_model(
    first_run, data_dir, lenient
) -> None:
    from typer.testing import CliRunner

    from braintumor_zenml.cli import app
    from braintumor_zenml.launch import launch_training

    before = _versions()
    # Only the gate settings differ from the first run: the training comes from the cache,
    # so this version holds the first one's model; run again, everything is cached.
    same = launch_training(SMOKE, data_dir, lenient, report_dir=None)
    rerun = launch_training(SMOKE, data_dir, lenient, report_dir=None)
    statuses = _step_statuses(rerun.run_name)
    assert statuses.pop("promote") == "completed" and statuses.pop("package") == "completed"
    assert set(statuses.values()) == {"cached"}, statuses  # everything else from the cache
    assert rerun.decision["passed"] and rerun.decision["target_stage"] == "staging"
    for outcome in (same, rerun):
        assert outcome.same_model_as == first_run.model_version and outcome.stage == "none"
        assert _metadata(outcome.model_version)["same_model_as"] == first_run.model_version
    assert _versions() == {**before, same.model_version: None, rerun.model_version: None}
    assert not rerun.packaged["packaged"]
    refused = CliRunner().invoke(
        app, ["promote", "--version", str(rerun.model_version), "--params", str(lenient)]
    )
    assert refused.exit_code == 2
    assert f"same model as version {first_run.model_version}" in refused.output


def test_the_gate_compares_only_on_images_neither_model_trained_on(
    first_run, data_dir, lenient, tmp_path: Path
) -> None:
    """Another split seed: some of the candidate's test images are production's training
    images. They are left out of the comparison, and with too few left it is not run."""
    from zenml.client import Client

    from braintumor_zenml.launch import launch_training

    params = yaml.safe_load(lenient.read_text())
    params["integrity"]["seed"] = 7
    params["gate"]["min_comparison_images"] = 1000
    reseeded = tmp_path / "params.yaml"
    reseeded.write_text(yaml.safe_dump(params))
    production = _production()
    faster = {"backbones": ["custom_cnn"]}
    outcome = launch_training(SMOKE, data_dir, reseeded, overrides=faster, report_dir=None)
    decision = outcome.decision
    check = next(c for c in decision["checks"] if c["name"] == "no_regression")
    assert check["ran"] is False and "NOT RUN against production" in check["detail"]
    assert decision["passed"] and decision["target_stage"] == "staging"  # never production
    assert _production() == production

    def splits_of(version: int):
        return Client().get_model_version(MODEL_NAME, version).get_artifact("splits").load()

    old, new = splits_of(production), splits_of(outcome.model_version)
    trained = set(old.loc[old["split"].isin(["train", "val"]), "cluster_id"])
    tested = new[(new["split"] == "test") & (new["status"] == "kept")]
    unseen = int((~tested["cluster_id"].isin(trained)).sum())
    assert unseen < len(tested)  # the reseeded split does overlap production's training
    assert decision["comparison_images"] == unseen
    assert f"only {unseen} of the {len(tested)} test images" in check["detail"]


def test_a_failed_run_promotes_nothing(first_run, data_dir) -> None:
    from braintumor_zenml.launch import launch_training

    before = _versions()
    diverging = {"backbones": ["custom_cnn"], "training": {"learning_rate": 1e12, "epochs": 2}}
    with pytest.raises(RuntimeError, match="train_custom_cnn"):
        launch_training(SMOKE, data_dir, overrides=diverging, report_dir=None)
    after = _versions()
    assert _production() == first_run.model_version
    new = set(after) - set(before)
    assert all(after[number] is None for number in new)


def _retrained(seed: int) -> dict:
    """Run settings that train a new model (one backbone, another seed)."""
    training = yaml.safe_load(SMOKE.read_text())["parameters"]["run"]["training"]
    return {"backbones": ["custom_cnn"], "training": {**training, "seed": seed}}


@pytest.fixture(scope="module")
def staged(first_run, data_dir, lenient):
    """A new model, gated by the smoke profile's zero floors (here the same as the lenient
    repository's): staging."""
    from braintumor_zenml.launch import launch_training

    outcome = launch_training(SMOKE, data_dir, lenient, overrides=_retrained(7), report_dir=None)
    assert outcome.stage == "staging" and outcome.same_model_as is None
    return outcome


def test_promote_decides_with_the_repository_policy(first_run, staged, lenient, strict) -> None:
    import bentoml
    from typer.testing import CliRunner

    from braintumor_zenml.cli import app

    runner = CliRunner()
    version = str(staged.model_version)
    # The policy of today's repository decides, not the zero floors the version's run used.
    refused = runner.invoke(app, ["promote", "--version", version, "--params", str(strict)])
    assert refused.exit_code == 1 and "REJECT" in refused.output, refused.output
    assert f"policy {strict}:gate@" in refused.output and "floor 1.0100" in refused.output
    assert _production() == first_run.model_version

    dry = ["promote", "--version", version, "--params", str(lenient), "--dry-run"]
    checked = runner.invoke(app, dry)
    assert checked.exit_code == 0 and "production is unchanged" in checked.output
    assert _production() == first_run.model_version

    accepted = runner.invoke(app, ["promote", "--version", version, "--params", str(lenient)])
    assert accepted.exit_code == 0, accepted.output
    assert "PROMOTE to production (policy " in accepted.output
    assert _production() == staged.model_version
    assert _versions()[first_run.model_version] == "archived"
    recheck = _metadata(staged.model_version)["promotion_recheck"]
    assert recheck["policy"]["source"] == f"{lenient}:gate" and recheck["git_commit"]

    packaged = runner.invoke(app, ["package", "--stage", "production", "--no-build"])
    assert packaged.exit_code == 0, packaged.output
    model = bentoml.models.get("brain-tumor-classifier:latest")
    assert model.info.labels["model_version"] == str(staged.model_version)
    assert model.info.labels["stage"] == "production"
    assert "guard" in model.info.metadata  # packaged as the pipeline packages it
    missing = runner.invoke(app, ["package", "--version", "999"])
    assert missing.exit_code == 2 and "no version 999" in missing.output


def test_rollback_restores_the_previous_production_version(first_run, staged) -> None:
    import bentoml
    from typer.testing import CliRunner

    from braintumor_zenml.cli import app

    runner = CliRunner()
    assert _production() == staged.model_version  # promoted by the test above
    unexplained = runner.invoke(app, ["rollback", "--no-build"])
    assert unexplained.exit_code == 2 and "--reason is required" in unexplained.output
    assert len(unexplained.output.strip().splitlines()) == 1
    assert _production() == staged.model_version

    reason = "glioma recall dropped on new scanner data"
    back = runner.invoke(app, ["rollback", "--reason", reason, "--no-build"])
    assert back.exit_code == 0, back.output
    assert f"production: version {first_run.model_version} (was {staged.model_version})" in (
        back.output
    )
    assert reason in back.output
    assert _production() == first_run.model_version
    assert _versions()[staged.model_version] == "archived"
    restored = _metadata(first_run.model_version)["rollback"]
    assert restored["reason"] == reason and restored["from_version"] == staged.model_version
    assert restored["by"] and restored["at"]
    assert _metadata(staged.model_version)["rolled_back"]["reason"] == reason
    model = bentoml.models.get("brain-tumor-classifier:latest")  # packaging serves it again
    assert model.info.labels["model_version"] == str(first_run.model_version)
    assert model.info.labels["stage"] == "production"

    # Nothing was in production before the first version, and the one rolled back from is
    # not "previous": a second rollback needs --to.
    again = runner.invoke(app, ["rollback", "--reason", "again", "--no-build"])
    assert again.exit_code == 2 and "give --to N" in again.output
    never = min(n for n, stage in _versions().items() if stage is None)  # the rejected one
    refused = runner.invoke(app, ["rollback", "--to", str(never), "--reason", "x", "--no-build"])
    assert refused.exit_code == 2 and "was never in production" in refused.output
    assert _production() == first_run.model_version

    forward = ["rollback", "--to", str(staged.model_version), "--reason", "fixed", "--no-build"]
    assert runner.invoke(app, forward).exit_code == 0
    assert _production() == staged.model_version


def test_a_binary_run_gates_both_classes_and_packages_a_binary_model(
    first_run, data_dir, lenient, sample_dir, tmp_path
) -> None:
    """The smoke profile with `training.task: binary`: trained on the same splits, gated on
    the recall of both classes, compared with the four-class production model as tumour vs no
    tumour, packaged with a binary card the service's predictor answers from."""
    import bentoml
    from zenml.client import Client

    from braintumor.preprocessing import load_and_preprocess
    from braintumor.serving.metadata import ModelCard
    from braintumor.serving.predictor import Predictor
    from braintumor.serving.schemas import make_prediction
    from braintumor_zenml.launch import launch_training

    assert _production() is not None  # a four-class model, from the tests above
    binary = {
        "backbones": ["custom_cnn"],
        "training": {"task": "binary"},
        "package": {"build_bento": False},
    }
    outcome = launch_training(SMOKE, data_dir, lenient, overrides=binary, report_dir=tmp_path)
    assert outcome.status == "completed" and outcome.stage == "staging"
    metrics = outcome.test_metrics
    assert metrics["task"] == "binary" and metrics["class_names"] == ["notumor", "tumour"]
    assert metrics["tumour_vs_none"]["sensitivity"] == metrics["per_class"]["tumour"]["recall"]
    checks = {check["name"]: check for check in outcome.decision["checks"]}
    assert {"recall_notumor", "recall_tumour"} <= set(checks)
    assert not any(name in checks for name in ("recall_glioma", "recall_pituitary"))
    assert "as tumour vs no tumour (production is four_class)" in checks["no_regression"]["detail"]
    metadata = Client().get_model_version(MODEL_NAME, outcome.model_version).run_metadata
    assert metadata["task"] == "binary" and list(metadata["class_names"]) == ["notumor", "tumour"]

    stored = bentoml.models.get(outcome.packaged["model_tag"])
    card = ModelCard.from_metadata(stored.info.metadata)
    assert card.task == "binary" and card.class_names == ("notumor", "tumour")
    assert len(card.guard.conformal_thresholds) == 2
    assert "tumour_sensitivity" in card.metrics
    predictor = Predictor(stored.path, card)
    image = sample_dir / "Testing" / "glioma_tumor" / "image(27).jpg"
    probs = predictor.predict(load_and_preprocess(image, card.spec)[None])[0]
    answer = make_prediction(probs, card.class_names, 0.6, card.model_version, "t", request_id="r")
    assert list(answer.probabilities) == ["notumor", "tumour"]
    assert answer.tumour_probability == pytest.approx(answer.probabilities["tumour"], abs=1e-6)
    html = outcome.report_path.read_text()
    assert "task <b>binary</b> (notumor, tumour)" in html and "tumour sensitivity" in html
    assert "Grad-CAM" in html


@pytest.mark.browser
def test_the_dashboard_shows_the_run_dag_and_its_report(first_run) -> None:
    """`make dashboard` (braintumor_zenml/dashboard.py) in a real Chromium: the training run's DAG
    with its steps, and the run report rendered as the `run_report` artifact's visualisation."""
    import shutil
    import socket

    from zenml.client import Client

    from braintumor_zenml import dashboard

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
            # The DAG is laid out in the browser; a tall one opens zoomed in on its top, and
            # only the nodes in view are drawn: fit it to the view first.
            page.wait_for_selector(".react-flow__node", timeout=120_000)
            page.get_by_label("Fit view").click()
            page.wait_for_selector(
                ".react-flow__node-artifact:has-text('run_report')", timeout=60_000
            )
            edges = [
                e.get_attribute("aria-label")
                for e in page.query_selector_all("[aria-label^='Edge from']")
            ]
            assert "Edge from step/report to report/outputs/step_output/run_report" in edges
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
