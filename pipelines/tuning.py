"""The tuning pipeline: an Optuna study over the search space of a run config's `tuning:`.

    load data -> audit -> leakage-free split (the training pipeline's steps, so cached)
      -> tuning_data (the kept train and val images only, in a folder of their own)
      -> tune_trials (each trial: train on train, weighted F1 on val, pruned per epoch)

The test split never reaches `tune_trials`: it gets the `tuning_data` folder and rows, not
the data or the split. The study is stored in an Optuna storage, by default `optuna.db` next
to the local ZenML store; the same study name and storage continue it. `launch_tuning`
writes the best trial as a run config for `braintumor train`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zenml import pipeline

from braintumor.constants import ARTIFACT_BEST_RUN_CONFIG, ARTIFACT_STUDY_SUMMARY
from braintumor.lineage import git_commit
from braintumor.run_config import RunConfig
from braintumor.tuning import best_config_document
from braintumor_zenml.launch import (
    RunConfigError,
    SubmissionError,
    data_parameters,
    read_run_config,
    submit,
)
from pipelines.training import training_step_settings
from steps.audit_data import audit_data
from steps.load_data import load_data
from steps.split_data import split_data
from steps.tune_trials import tune_trials
from steps.tuning_data import tuning_data

STUDY_FILE = "optuna.db"


@pipeline(enable_cache=True)
def tuning_pipeline(
    data_source: str,
    data_hash: str,
    run: dict[str, Any],
    integrity: dict[str, Any],
    clahe: dict[str, Any],
    storage: str,
    study_name: str,
    n_trials: int,
) -> None:
    config = RunConfig(**run)
    images, manifest = load_data(source=data_source, data_hash=data_hash)
    clusters, _, _ = audit_data(images=images, manifest=manifest, integrity=integrity)
    splits = split_data(manifest=manifest, clusters=clusters, integrity=integrity)
    tuning_images, rows = tuning_data(images=images, splits=splits)
    context = {"data_hash": data_hash, "protocol": str(integrity.get("protocol", "resplit"))}
    tune_trials.with_options(settings=training_step_settings(config))(
        tuning_images,
        rows,
        run=run,
        clahe=clahe,
        storage=storage,
        study_name=study_name,
        n_trials=n_trials,
        context=context,
    )


def default_storage() -> str:
    """`optuna.db` next to the local ZenML store's SQLite file."""
    from sqlalchemy.engine import make_url
    from zenml.client import Client

    store = Client().zen_store
    url = str(store.config.url)
    if not (store.is_local_store() and url.startswith("sqlite:")):
        raise ValueError(
            "the ZenML store is not a local SQLite file: pass --storage, an Optuna storage "
            "URL that the steps can reach (e.g. postgresql://user@host/optuna)"
        )
    return f"sqlite:///{Path(make_url(url).database).parent / STUDY_FILE}"


@dataclass
class TuningOutcome:
    run_name: str
    status: str
    study: dict[str, Any] = field(default_factory=dict)  # StudyOutcome.summary()
    best_config: Path | None = None


def launch_tuning(
    config_path: Path,
    n_trials: int,
    data_dir: Path = Path("data/raw"),
    params_path: Path = Path("params.yaml"),
    protocol: str | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    out: Path | None = None,
) -> TuningOutcome:
    """Run `n_trials` more trials of the study, then write its best trial as a run config.

    Args:
        study_name: default `tuning.study_name`, else the config's file name.
        storage: an Optuna storage URL; default `default_storage()`.
        out: where the best trial's run config goes; default configs/tuned/<study>.yaml.
    """
    from zenml.client import Client

    document, config = read_run_config(config_path)
    if config.tuning is None:
        raise RunConfigError(f"{config_path} has no `tuning:` block in `parameters.run`")
    if n_trials < 1:
        raise ValueError(f"--trials must be at least 1, not {n_trials}")
    name = study_name or config.tuning.study_name or Path(config_path).stem
    storage = storage or default_storage()
    if storage.startswith("sqlite:") and Client().active_stack.orchestrator.flavor != "local":
        raise SubmissionError(
            "the run was not started: an SQLite study file is local to this machine; with "
            "a remote orchestrator pass --storage, a database its steps can reach"
        )
    data = data_parameters(data_dir, params_path, protocol)
    parameters = {
        **data,
        "run": document["parameters"]["run"],
        "storage": storage,
        "study_name": name,
        "n_trials": n_trials,
    }
    pipeline_run = submit(tuning_pipeline, document, parameters, cache=True)
    outcome = TuningOutcome(pipeline_run.name, str(pipeline_run.status.value))
    step = pipeline_run.steps.get("tune_trials")
    if step is None or "best_run_config" not in step.outputs:
        return outcome
    outcome.study = step.outputs[ARTIFACT_STUDY_SUMMARY][0].load()
    best = outcome.study["best"]
    note = (
        f"Best trial {best['number']} of Optuna study {name!r} ({outcome.study['storage']}):\n"
        f"validation weighted F1 {best['value']:.4f}, protocol "
        f"{data['integrity'].get('protocol', 'resplit')}, data {data['data_hash']},\n"
        f"code {git_commit()}, tuned from {config_path} by `braintumor tune` "
        f"(run {pipeline_run.name}).\n"
        "The test split was not used. Train it: braintumor train --config <this file>"
    )
    text, _ = best_config_document(
        copy.deepcopy(document), step.outputs[ARTIFACT_BEST_RUN_CONFIG][0].load(), note
    )
    outcome.best_config = Path(out or Path("configs") / "tuned" / f"{name}.yaml")
    outcome.best_config.parent.mkdir(parents=True, exist_ok=True)
    outcome.best_config.write_text(text)
    return outcome
