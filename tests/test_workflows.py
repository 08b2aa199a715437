"""The GitHub Actions workflows: valid (actionlint, bash syntax), shaped as the product needs
(CI runs `make test`, retraining is scheduled, promotion takes a version, drift opens an
issue), secrets referenced and never written down; and the scripts they call work."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import pytest
import yaml
import zenml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
SCRIPTS = ROOT / ".github" / "scripts"
NAMES = ("ci", "retrain", "promote", "drift")
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def load(name: str) -> dict[str, Any]:
    document = yaml.safe_load((WORKFLOWS / f"{name}.yml").read_text())
    document["on"] = document.pop(True, document.get("on"))  # YAML 1.1 reads `on` as True
    return document


def steps(document: dict[str, Any], job: str | None = None) -> list[dict[str, Any]]:
    jobs = [document["jobs"][job]] if job else list(document["jobs"].values())
    return [step for j in jobs for step in j.get("steps", [])]


def scripts(document: dict[str, Any], job: str | None = None) -> str:
    return "\n".join(step.get("run", "") for step in steps(document, job))


def uses(document: dict[str, Any]) -> list[str]:
    return [step["uses"] for step in steps(document) if "uses" in step]


def actionlint() -> str | None:
    found = shutil.which("actionlint") or Path(sys.executable).with_name("actionlint")
    return str(found) if found and Path(found).is_file() else None


@pytest.mark.skipif(actionlint() is None, reason="actionlint not installed (dev extra)")
def test_actionlint_passes():
    files = [str(WORKFLOWS / f"{name}.yml") for name in NAMES]
    result = subprocess.run(
        [actionlint(), "-color=false", *files], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", NAMES)
def test_every_run_script_is_valid_bash(name: str, tmp_path: Path):
    for index, step in enumerate(steps(load(name))):
        if "run" not in step:
            continue
        script = tmp_path / f"{name}-{index}.sh"
        script.write_text(EXPRESSION.sub("EXPR", step["run"]))
        result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, f"{name} step {step.get('name')}: {result.stderr}"


@pytest.mark.parametrize("name", NAMES)
def test_secrets_are_referenced_never_written(name: str):
    text = (WORKFLOWS / f"{name}.yml").read_text()
    document = load(name)
    sensitive = re.compile(r"(KEY|TOKEN|PASSWORD|SECRET)", re.IGNORECASE)
    for scope in [document, *document["jobs"].values(), *steps(document)]:
        for key, value in (scope.get("env") or {}).items():
            if sensitive.search(key):
                assert re.fullmatch(r"\$\{\{ (secrets\.[A-Z_]+|github\.token) \}\}", str(value)), (
                    f"{name}: {key} must come from a secret, not {value!r}"
                )
    assert not re.search(r"https?://[^\s/]+:[^\s/]+@", text), "credentials in a URL"
    # Untrusted values reach scripts through env, never pasted into the script text.
    for script in (step.get("run", "") for step in steps(document)):
        assert not re.search(r"\$\{\{\s*(inputs|vars|github\.event|secrets)\.", script), script


def test_ci_runs_make_test_on_python_311_with_chromium():
    ci = load("ci")
    assert {"push", "pull_request"} <= set(ci["on"])
    test = ci["jobs"]["test"]
    assert "python:3.11" in test["container"]
    run = scripts(ci, "test")
    assert re.search(r"^make test\s*$", run, re.MULTILINE)
    assert "apt-get install" in run and "chromium" in run


def test_ci_builds_and_containerizes_the_bento_after_the_tests():
    ci = load("ci")
    bento = ci["jobs"]["bento"]
    assert bento["needs"] == "test" and bento["runs-on"] == "ubuntu-latest"
    run = scripts(ci, "bento")
    expected = [
        "make run CONFIG=configs/smoke.yaml BRAINTUMOR_DATA_SOURCE=tests/data/sample",
        "braintumor package --stage staging",
        "bentoml containerize brain_tumor_classifier:latest",
        ".github/scripts/smoke_test.py",
    ]
    positions = [run.index(command) for command in expected]
    assert positions == sorted(positions), "commands out of order"


def test_retrain_is_scheduled_and_dispatchable_with_a_config():
    retrain = load("retrain")
    cron = retrain["on"]["schedule"][0]["cron"]
    assert len(cron.split()) == 5
    config = retrain["on"]["workflow_dispatch"]["inputs"]["config"]
    assert config["default"] == "configs/cpu.yaml"
    text = (WORKFLOWS / "retrain.yml").read_text()
    assert "secrets.ZENML_STORE_URL" in text and "secrets.ZENML_STORE_API_KEY" in text
    run = scripts(retrain)
    assert "::warning" in run and "throwaway local ZenML store" in run
    assert "GITHUB_STEP_SUMMARY" in run
    for command in ("make data", 'braintumor train --config "$CONFIG"', "run_summary.py"):
        assert command in run
    assert any(u.startswith("actions/upload-artifact@") for u in uses(retrain))
    assert retrain["concurrency"]["cancel-in-progress"] is False


def test_promote_moves_the_stage_only_after_packaging_smoke_test_and_push():
    promote = load("promote")
    version = promote["on"]["workflow_dispatch"]["inputs"]["version"]
    assert version["required"] is True
    assert "schedule" not in promote["on"] and "push" not in promote["on"]
    run = scripts(promote)
    expected = [
        'braintumor promote --version "$VERSION" --dry-run',
        'braintumor package --version "$VERSION" --as-stage production',
        "bentoml serve brain_tumor_classifier:latest --host 127.0.0.1",
        ".github/scripts/smoke_test.py",
        "docker login",
        "bentoml containerize brain_tumor_classifier:latest",
        'docker push "$IMAGE:$VERSION"',
        'braintumor promote --version "$VERSION"\n',  # the stage moves here, and only here
        'docker push "$IMAGE:production"',
    ]
    positions = [run.index(command) for command in expected]
    assert positions == sorted(positions), "commands out of order"
    # Every step runs only if the ones before succeeded (no `if: always()` and no
    # continue-on-error), so a failure before the move leaves the registry unchanged.
    for step in steps(promote):
        assert "if" not in step and not step.get("continue-on-error"), step.get("name")
    moves = [s for s in steps(promote) if "braintumor promote" in s.get("run", "")]
    assert [s["run"].strip() for s in moves] == [
        'braintumor promote --version "$VERSION" --dry-run',
        'braintumor promote --version "$VERSION"',
    ]
    text = (WORKFLOWS / "promote.yml").read_text()
    for secret in ("ZENML_STORE_URL", "ZENML_STORE_API_KEY", "REGISTRY", "REGISTRY_PASSWORD"):
        assert f"secrets.{secret} }}}}" in text


def test_drift_runs_daily_and_opens_an_issue_on_drift():
    drift = load("drift")
    assert len(drift["on"]["schedule"][0]["cron"].split()) == 5
    assert drift["permissions"]["issues"] == "write"
    assert "vars.BRAINTUMOR_MONITOR_CURRENT" in (WORKFLOWS / "drift.yml").read_text()
    run = scripts(drift)
    assert "braintumor monitor" in run and "--fail-on-drift" in run
    assert "gh issue create" in run
    issue_step = next(s for s in steps(drift) if "gh issue create" in s.get("run", ""))
    assert issue_step["if"] == "steps.monitor.outputs.exit_code == '1'"


def test_workflow_scripts_compile():
    for script in SCRIPTS.glob("*.py"):
        compile(script.read_text(), str(script), "exec")


def import_script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeService(BaseHTTPRequestHandler):
    """Answers like the braintumor service: /readyz, /predict (multipart `image`)."""

    label = "glioma"

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/readyz" else 404)
        self.end_headers()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if b'name="image"' not in body:
            self._json(400, {"error": "missing_field", "detail": "no `image` field"})
        elif b"this is not an image" in body:
            self._json(400, {"error": "not_an_image", "detail": "not a recognised image"})
        else:
            probs = {"glioma": 0.7, "meningioma": 0.1, "notumor": 0.1, "pituitary": 0.1}
            answer = {"label": self.label, "confidence": 0.7, "probabilities": probs}
            self._json(200, {**answer, "model_version": "3"})

    def _json(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def fake_service():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeService)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_smoke_test_passes_a_good_service_and_fails_a_bad_one(
    fake_service: str, sample_dir: Path, capsys: pytest.CaptureFixture[str]
):
    smoke = import_script("smoke_test")
    images = ["--images", str(sample_dir / "Testing"), "--timeout", "10"]
    assert smoke.main(["--url", fake_service, *images]) == 0
    assert capsys.readouterr().out.count("ok image(") == 9
    FakeService.label = "cat"
    try:
        assert smoke.main(["--url", fake_service, *images]) == 1
    finally:
        FakeService.label = "glioma"
    assert "unknown label 'cat'" in capsys.readouterr().err


def test_smoke_test_gives_up_when_the_service_never_gets_ready(sample_dir: Path):
    smoke = import_script("smoke_test")
    with pytest.raises(TimeoutError, match="not ready"):
        smoke.wait_ready("http://127.0.0.1:9", timeout_s=1.5)


SUMMARY_PIPELINE = "workflow_summary_test_pipeline"


@zenml.step
def fake_select_best() -> tuple[Annotated[list, "leaderboard"], Annotated[str, "winner"]]:
    rows = [{"backbone": "custom_cnn", "val_weighted_f1": 0.91, "val_min_recall": 0.8}]
    return rows, "custom_cnn"


@zenml.step
def fake_evaluate_winner() -> Annotated[dict, "test_metrics"]:
    return {"weighted_f1": 0.9, "weighted_f1_ci": [0.88, 0.92], "n": 300, "protocol": "resplit"}


@zenml.step
def fake_gate() -> Annotated[dict, "promotion_decision"]:
    checks = [
        {"name": "floor", "passed": True, "detail": "weighted F1 0.9000 >= 0.85"},
        {"name": "recall", "passed": False, "detail": "recall of glioma 0.70 < 0.85"},
        {"name": "no_regression", "passed": True, "ran": False, "detail": "only 12 images"},
    ]
    policy = {"name": "params.yaml:gate@0123456789ab"}
    return {"passed": False, "target_stage": None, "checks": checks, "policy": policy}


@zenml.step
def fake_load_data() -> Annotated[pd.DataFrame, "manifest"]:
    return pd.DataFrame({"path": ["a", "b", "c"], "source": ["kaggle", "kaggle", "mine"]})


@zenml.pipeline(name=SUMMARY_PIPELINE, enable_cache=False)
def summary_pipeline() -> None:
    fake_load_data(id="load_data")
    fake_select_best(id="select_best")
    fake_evaluate_winner(id="evaluate_winner")
    fake_gate(id="gate")


@pytest.mark.slow
def test_run_summary_reports_the_gate_decision_of_the_latest_run(
    capsys: pytest.CaptureFixture[str],
):
    summary_pipeline()
    run_summary = import_script("run_summary")
    assert run_summary.main(["--pipeline", SUMMARY_PIPELINE]) == 0
    text = capsys.readouterr().out
    assert "**REJECTED**: production is unchanged" in text
    assert "under the policy `params.yaml:gate@0123456789ab`" in text
    assert "❌ recall of glioma 0.70 < 0.85" in text and "✅ weighted F1" in text
    assert "Winner **custom_cnn**" in text and "weighted F1 0.9000 [0.8800, 0.9200]" in text
    assert "| custom_cnn | 0.9100 | 0.8000 |" in text
    assert "✅ ⚠️ not run: only 12 images" in text
    assert "Data: 3 images by source: kaggle 2, mine 1" in text
    assert run_summary.main(["--pipeline", "no_such_pipeline_here"]) == 1
