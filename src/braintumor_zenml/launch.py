"""Starting a training run: assemble its parameters (run config, params.yaml, data version,
code version, current production, promotion policy), run the pipeline, and collect what a
person needs to see.

The CLI (`braintumor train`) and tests call `launch_training`.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from braintumor.constants import (
    ARTIFACT_DECISION,
    ARTIFACT_LEADERBOARD,
    ARTIFACT_PACKAGED,
    ARTIFACT_REPORT,
    ARTIFACT_STAGE,
    ARTIFACT_TEST_METRICS,
    ARTIFACT_WINNER,
    PROTOCOL_LEAVE_SOURCE_OUT,
)
from braintumor.data.manifest import read_manifest
from braintumor.data.versioning import data_version
from braintumor.integrity.policy import IntegrityPolicy, with_protocol
from braintumor.integrity.splits import held_out_rows
from braintumor.lineage import git_commit
from braintumor.params import clahe_params, load_params, promotion_policy
from braintumor.run_config import RunConfig


class RunConfigError(ValueError):
    """A run config file that cannot be used; the message says what to fix."""


class SubmissionError(RuntimeError):
    """The orchestrator did not accept the run (e.g. Kubeflow unreachable); the run is failed."""


@dataclass
class TrainingOutcome:
    run_name: str
    status: str
    model_version: int | None
    winner: str | None = None
    leaderboard: list[dict[str, Any]] = field(default_factory=list)
    test_metrics: dict[str, Any] = field(default_factory=dict)
    decision: dict[str, Any] = field(default_factory=dict)
    stage: str | None = None
    same_model_as: int | None = None  # an earlier version holding this very model (a re-run)
    packaged: dict[str, Any] = field(default_factory=dict)
    report_path: Path | None = None
    exit_code_on_reject: int = 0


def read_run_config(path: Path) -> tuple[dict[str, Any], RunConfig]:
    """The whole YAML (ZenML run config) and its validated `parameters.run` block."""
    if not Path(path).is_file():
        raise RunConfigError(f"run config {path} not found (see configs/)")
    document = yaml.safe_load(Path(path).read_text()) or {}
    run = (document.get("parameters") or {}).get("run")
    if run is None:
        raise RunConfigError(f"{path} has no `parameters: run:` block")
    try:
        return document, RunConfig(**run)
    except ValueError as exc:
        raise RunConfigError(f"{path}: {exc}") from None


def run_document(
    document: dict[str, Any], parameters: dict[str, Any], enable_cache: bool
) -> dict[str, Any]:
    """The ZenML run config of one run: `document` with `parameters`, and caching left to
    each step unless it is off. A run-level `enable_cache` overrides every step's own setting
    (ZenML's compiler configures each step with it), so `true` there would serve the steps
    that must run every time (promote, package) from the cache."""
    document = copy.deepcopy(document)
    cache = enable_cache and document.pop("enable_cache", None) is not False
    if not cache:
        document["enable_cache"] = False  # off for every step
    document["parameters"] = parameters
    return document


def production_version_id() -> str:
    from braintumor_zenml.registry import model_version_in_stage

    production = model_version_in_stage("production")
    return str(production.id) if production else "none"


def launch_training(
    config_path: Path,
    data_dir: Path = Path("data/raw"),
    params_path: Path = Path("params.yaml"),
    protocol: str | None = None,
    holdout: str | None = None,
    variant: str | None = None,
    enable_cache: bool = True,
    report_dir: Path | None = Path("reports"),
    overrides: dict[str, Any] | None = None,
) -> TrainingOutcome:
    """Run the training pipeline with `config_path`, on the data in `data_dir`.

    Args:
        protocol: `resplit`, `official` or `leave-source-out`, overriding params.yaml's
            `integrity.protocol`.
        holdout: the source leave-source-out tests on (`integrity.holdout_source`).
        variant: `raw` or `clahe`, overriding every backbone's preprocessing variant.
        overrides: extra `run` settings merged over the config (e.g. {"gate": {...}}).
    """
    from pipelines.training import training_pipeline

    document, _ = read_run_config(config_path)
    run = copy.deepcopy(document["parameters"]["run"])
    for key, value in (overrides or {}).items():
        run[key] = {**run.get(key, {}), **value} if isinstance(value, dict) else value
    if variant:
        run.setdefault("training", {}).setdefault("preprocessing", {})["variant"] = variant
    config = RunConfig(**run)  # validate what will actually run
    run.pop("tuning", None)  # the search space is `braintumor tune`'s, not the run's
    parameters = {
        **data_parameters(data_dir, params_path, protocol, holdout),
        "run": run,
        "promotion_policy": promotion_policy(params_path).model_dump(),
        "policy_source": f"{params_path}:gate",
        "production_version": production_version_id(),
        "git_commit": git_commit(),
    }
    pipeline_run = submit(training_pipeline, document, parameters, enable_cache)
    return collect_outcome(pipeline_run, report_dir, config.gate.exit_code_on_reject)


def data_parameters(
    data_dir: Path, params_path: Path, protocol: str | None = None, holdout: str | None = None
) -> dict[str, Any]:
    """The data side of a run, as every pipeline takes it: the data folder and its version,
    params.yaml's integrity policy (with --protocol / --holdout over it, checked here rather
    than in a step) and CLAHE settings."""
    integrity = with_protocol(load_params(params_path).get("integrity"), protocol, holdout)
    policy = IntegrityPolicy.from_dict(integrity)
    if policy.protocol == PROTOCOL_LEAVE_SOURCE_OUT:
        held_out_rows(read_manifest(Path(data_dir)), policy)
    return {
        "data_source": str(Path(data_dir).resolve()),
        "data_hash": data_version(Path(data_dir)).key,
        "integrity": integrity,
        "clahe": clahe_params(params_path).model_dump(),
    }


def submit(pipeline: Any, document: dict[str, Any], parameters: dict[str, Any], cache: bool):
    """Start `pipeline` with the run config `document` and `parameters` (`run_document`); the
    finished run, hydrated. One-line `SubmissionError`s: a stack that needs a ZenML server
    with a local store, or an orchestrator that refused the run."""
    from zenml.client import Client
    from zenml.orchestrators import PipelineSubmissionError

    _check_stack_can_submit()
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        yaml.safe_dump(run_document(document, parameters, cache), handle)
    try:
        started = pipeline.with_options(config_path=handle.name)()
    except PipelineSubmissionError as exc:
        raise SubmissionError(f"the run was not started: {exc}") from None
    finally:
        Path(handle.name).unlink(missing_ok=True)
    return Client().get_pipeline_run(started.id)


def _check_stack_can_submit() -> None:
    """A remote orchestrator reports back to a ZenML server: refuse, in one line, to start
    with a local store (ZenML would raise a RuntimeError deep in the run)."""
    from zenml.client import Client

    client = Client()
    stack = client.active_stack
    if stack.requires_remote_server and client.zen_store.is_local_store():
        raise SubmissionError(
            f"the run was not started: stack '{stack.name}' (orchestrator "
            f"'{stack.orchestrator.name}') needs a ZenML server; connect to one first "
            "(zenml login <server URL>, or set ZENML_STORE_URL)"
        )


def collect_outcome(pipeline_run: Any, report_dir: Path | None, exit_code: int) -> TrainingOutcome:
    from zenml.client import Client

    pipeline_run = Client().get_pipeline_run(pipeline_run.id)
    steps = pipeline_run.steps

    def output(step: str, name: str) -> Any:
        if step not in steps or name not in steps[step].outputs:
            return None
        return steps[step].outputs[name][0].load()

    model_version = pipeline_run.model_version
    outcome = TrainingOutcome(
        run_name=pipeline_run.name,
        status=str(pipeline_run.status.value),
        model_version=model_version.number if model_version else None,
        winner=output("select_best", ARTIFACT_WINNER),
        leaderboard=output("select_best", ARTIFACT_LEADERBOARD) or [],
        test_metrics=output("evaluate_winner", ARTIFACT_TEST_METRICS) or {},
        decision=output("gate", ARTIFACT_DECISION) or {},
        stage=output("promote", ARTIFACT_STAGE),
        same_model_as=model_version.run_metadata.get("same_model_as") if model_version else None,
        packaged=output("package", ARTIFACT_PACKAGED) or {},
        exit_code_on_reject=exit_code,
    )
    html = output("report", ARTIFACT_REPORT)
    if html is not None and report_dir is not None:
        report_dir.mkdir(parents=True, exist_ok=True)
        outcome.report_path = report_dir / f"{pipeline_run.name}.html"
        outcome.report_path.write_text(str(html))
    return outcome
