"""Hyperparameter search with Optuna over the `tuning:` block of a run config.

The search space is declared in the run config (`parameters.run.tuning.space`): each entry
maps a dotted path into the tuned backbone's training settings (`learning_rate`,
`head.dropout`, `augmentation.contrast`, `cnn.filters`, ...) to a typed range, and every
range is checked against `TrainingConfig` when the run config is validated.

A trial trains the backbone on the train rows and returns the weighted F1 of the trained
model on the validation rows. The test rows never reach a trial: `tuning_rows` drops them
and `run_study` refuses a table that still has one. After every epoch the validation weighted
F1 is reported to the trial, and the pruner (median rule) stops a trial that falls below the
median of earlier trials at the same epoch. The study lives in an Optuna storage (by default
an SQLite file next to the ZenML store); the same study name and storage continue it. The
best trial becomes a run config that `braintumor train` accepts (`tuned_run`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from braintumor.constants import CLASS_NAMES, TRAIN, VAL

if TYPE_CHECKING:
    import optuna

    from braintumor.run_config import RunConfig
    from braintumor.training.dataset import ArraySplit

log = logging.getLogger(__name__)

SCALARS = (str, int, float, bool, type(None))


class TuningError(ValueError):
    """A study that cannot run as asked; the message says what to change."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FloatRange(_Strict):
    """A float between `low` and `high` (both included), on a log scale with `log: true`."""

    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _valid(self) -> FloatRange:
        _check_bounds(self.low, self.high, self.log, self.step is not None)
        return self

    def candidates(self) -> list[Any]:
        return [self.low, self.high]

    def suggest(self, trial: optuna.Trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log, step=self.step)


class IntRange(_Strict):
    """A whole number between `low` and `high` (both included)."""

    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _valid(self) -> IntRange:
        _check_bounds(self.low, self.high, self.log, self.step != 1)
        return self

    def candidates(self) -> list[Any]:
        return [self.low, self.high]

    def suggest(self, trial: optuna.Trial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, log=self.log, step=self.step)


class Choice(_Strict):
    """One of `choices` (any YAML values: numbers, strings, lists such as filter widths)."""

    type: Literal["categorical"]
    choices: list[Any] = Field(min_length=1)

    def candidates(self) -> list[Any]:
        return list(self.choices)

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        if all(isinstance(choice, SCALARS) for choice in self.choices):
            return trial.suggest_categorical(name, self.choices)
        # Optuna stores scalar choices only: others are suggested as their JSON text.
        labels = [json.dumps(choice) for choice in self.choices]
        return self.choices[labels.index(trial.suggest_categorical(name, labels))]


def _check_bounds(low: float, high: float, log: bool, stepped: bool) -> None:
    if low >= high:
        raise ValueError(f"low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise ValueError(f"a log range needs low > 0, not {low}")
    if log and stepped:
        raise ValueError("a log range takes no step")


Parameter = Annotated[FloatRange | IntRange | Choice, Field(discriminator="type")]


class PrunerConfig(_Strict):
    """Optuna's median pruner: stop a trial whose validation weighted F1 at an epoch is below
    the median of the earlier trials at that epoch."""

    kind: Literal["median", "none"] = "median"
    startup_trials: int = Field(5, ge=0)  # no pruning until this many trials have finished
    warmup_epochs: int = Field(5, ge=0)  # nor in a trial's first epochs

    def pruner(self) -> optuna.pruners.BasePruner:
        import optuna

        if self.kind == "none":
            return optuna.pruners.NopPruner()
        return optuna.pruners.MedianPruner(
            n_startup_trials=self.startup_trials, n_warmup_steps=self.warmup_epochs
        )


class TuningConfig(_Strict):
    """The `tuning:` block of a run config (`braintumor tune`)."""

    # dotted path into the backbone's training settings -> its range
    space: dict[str, Parameter] = Field(min_length=1)
    backbone: str | None = None  # the backbone tuned; default: the first of `backbones`
    study_name: str | None = None  # default: the run config's file name without .yaml
    seed: int = 42  # the TPE sampler's seed (offset by the trials a resumed study holds)
    pruner: PrunerConfig = PrunerConfig()

    def tuned_backbone(self, run: RunConfig) -> str:
        return self.backbone or run.backbones[0]

    def check(self, run: RunConfig) -> None:
        """Every value a range can take must make a valid training config of the backbone."""
        backbone = self.tuned_backbone(run)
        if backbone not in run.backbones:
            raise ValueError(f"tuning.backbone {backbone!r} is not among backbones {run.backbones}")
        base = run.model_dump(mode="json", exclude={"tuning"})
        for path, parameter in self.space.items():
            for value in parameter.candidates():
                try:
                    _run_config(tuned_run(base, backbone, {path: value}))
                except ValueError as exc:
                    raise ValueError(f"tuning.space.{path} = {value!r}: {_reason(exc)}") from None


def _reason(exc: ValueError) -> str:
    """A validation error in one line: where and what, without pydantic's links."""
    if not isinstance(exc, ValidationError):
        return str(exc)
    return "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or 'run'}: {error['msg']}"
        for error in exc.errors()
    )


def _run_config(run: dict[str, Any]) -> RunConfig:
    from braintumor.run_config import RunConfig

    return RunConfig(**run)


def _set_path(section: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for name in parents:
        child = section.get(name)
        if child is None:
            child = section[name] = {}
        elif not isinstance(child, dict):
            raise ValueError(f"{name} in {path} is a value, not a section")
        else:
            child = section[name] = dict(child)
        section = child
    section[leaf] = value


def tuned_run(run: dict[str, Any], backbone: str, values: dict[str, Any]) -> dict[str, Any]:
    """The run block that trains `backbone` alone with `values` (dotted paths) set.

    Its `training` is the backbone's merged settings (the config's `training` and its
    `overrides`) with the values on top, so a trial and the best trial's run config train
    the same thing; the `tuning` block is left out.
    """
    from braintumor.run_config import _deep_merge

    training = _deep_merge(
        run.get("training") or {}, (run.get("overrides") or {}).get(backbone, {})
    )
    for path, value in values.items():
        _set_path(training, path, value)
    tuned = {k: v for k, v in run.items() if k not in ("tuning", "overrides", "backbones")}
    return {"backbones": [backbone], **tuned, "training": training}


def tuning_rows(splits: pd.DataFrame) -> pd.DataFrame:
    """The rows a trial may see: kept images of the train and val splits, nothing else."""
    rows = splits[(splits["status"] == "kept") & splits["split"].isin([TRAIN, VAL])]
    return rows.sort_values("path").reset_index(drop=True)


def link_images(rows: pd.DataFrame, source: Path, target: Path) -> Path:
    """A folder with the images of `rows` only (hard links where possible) and their manifest
    lines: what the trials read, so that no test image is even on their disk."""
    from braintumor.data.manifest import read_manifest, write_manifest

    target.mkdir(parents=True, exist_ok=True)
    for relative in rows["path"]:
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source / relative, destination)
        except OSError:  # another file system, or links not allowed
            shutil.copy2(source / relative, destination)
    manifest = read_manifest(source)
    write_manifest(manifest[manifest["path"].isin(set(rows["path"]))], target)
    return target


@dataclass
class StudyOutcome:
    """What a tuning session leaves: every trial of the study so far and the best one."""

    study_name: str
    storage: str  # password hidden
    new_trials: int  # trials this session ran
    trials: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None  # number, value, values (dotted path -> value)
    best_run: dict[str, Any] | None = None  # the run block of the best trial (`tuned_run`)

    def summary(self) -> dict[str, Any]:
        states = Counter(trial["state"] for trial in self.trials)
        return {
            "study_name": self.study_name,
            "storage": self.storage,
            "new_trials": self.new_trials,
            "trials": self.trials,
            "states": dict(sorted(states.items())),
            "best": self.best,
        }


def shown_storage(storage: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(storage).render_as_string(hide_password=True)


def pruning_callback(trial: optuna.Trial, val: ArraySplit, num_classes: int):
    """A Keras callback: after each epoch, the validation weighted F1 of the weights being
    validated is reported to `trial` as that epoch's value; a trial the pruner stops raises
    `optuna.TrialPruned`, which ends training."""
    import keras
    import optuna

    from braintumor.evaluation.metrics import weighted_f1
    from braintumor.models.inference import predict_proba

    class _Prune(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            predicted = predict_proba(self.model, val.x).argmax(axis=1)
            trial.report(weighted_f1(val.y, predicted, num_classes), epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}")

    return _Prune()


def run_study(
    run: dict[str, Any],
    rows: pd.DataFrame,
    data_root: str | Path,
    *,
    n_trials: int,
    storage: str,
    study_name: str,
    clahe: dict[str, Any] | None = None,
    context: dict[str, str] | None = None,
    timeout: float | None = None,
    progress: Callable[[Any], None] | None = None,
) -> StudyOutcome:
    """Run `n_trials` more trials of the study `study_name` in `storage` (created if new).

    Args:
        run: the run block (`parameters.run`) with its `tuning:` block.
        rows: the train and val rows of a splits table (`tuning_rows`); a test row is refused.
        data_root: the folder the rows' paths are relative to.
        clahe: params.yaml's CLAHE settings (the `clahe` variant's preprocessing).
        context: what the study is about (data version, protocol): recorded when the study is
            created; a resumed study must match it, so that trials on other data never mix.
        progress: an epoch callback for train_model (default: its log line).

    Raises:
        TuningError: a test row, no tuning block, a study about other data, no trial completed.
    """
    import keras
    import optuna

    from braintumor.evaluation.metrics import weighted_f1
    from braintumor.models.calibrated import calibrate_model
    from braintumor.models.inference import predict_proba
    from braintumor.training.dataset import ArraySplit, label_indices, load_images, select_split
    from braintumor.training.trainer import TrainingError, log_progress, train_model

    config = _run_config(run)
    if config.tuning is None:
        raise TuningError("the run config has no `tuning:` block (the search space)")
    if n_trials < 1:
        raise TuningError(f"--trials must be at least 1, not {n_trials}")
    unexpected = sorted(set(rows["split"]) - {TRAIN, VAL})
    if unexpected or (rows["status"] != "kept").any():
        raise TuningError(
            f"tuning sees kept train and val rows only, not split(s) {unexpected or ['-']} or "
            "rows that are not kept: pass tuning_rows(splits)"
        )
    tuning = config.tuning
    backbone = tuning.tuned_backbone(config)
    base = {key: value for key, value in run.items() if key != "tuning"}
    train_rows, val_rows = select_split(rows, TRAIN), select_split(rows, VAL)
    if train_rows.empty or val_rows.empty:
        raise TuningError("tuning needs train and val rows")

    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        direction="maximize",
        pruner=tuning.pruner.pruner(),
        load_if_exists=True,
    )
    context = dict(context or {}, backbone=backbone)
    recorded = study.user_attrs.get("context")
    if recorded is None:
        study.set_user_attr("context", context)
    elif recorded != context:
        differs = {k: (recorded.get(k), v) for k, v in context.items() if recorded.get(k) != v}
        raise TuningError(
            f"study {study_name!r} was run on other settings {differs} (was, now): give this "
            "study another name (--study)"
        )
    # A resumed study must not replay the first session's random suggestions.
    study.sampler = optuna.samplers.TPESampler(seed=tuning.seed + len(study.trials))

    arrays: dict[Any, tuple[ArraySplit, ArraySplit]] = {}

    def load(spec) -> tuple[ArraySplit, ArraySplit]:
        if spec not in arrays:
            arrays[spec] = tuple(
                ArraySplit(
                    load_images(part["path"].tolist(), data_root, spec),
                    label_indices(part["label"].tolist()),
                    part["path"].tolist(),
                )
                for part in (train_rows, val_rows)
            )
        return arrays[spec]

    def objective(trial: optuna.Trial) -> float:
        values = {path: p.suggest(trial, path) for path, p in tuning.space.items()}
        trial.set_user_attr("values", values)
        training = _run_config(tuned_run(base, backbone, values)).training_config(backbone, clahe)
        train, val = load(training.preprocessing)
        try:
            result = train_model(
                training,
                (train, val),
                progress=progress or log_progress,
                callbacks=[pruning_callback(trial, val, len(CLASS_NAMES))],
            )
            if training.refit_class_bias:
                calibrate_model(result.model, val.x, val.y, class_offsets=True)
            predicted = predict_proba(result.model, val.x).argmax(axis=1)
            trial.set_user_attr("epochs_run", result.epochs_run)
            trial.set_user_attr("best_epoch", result.best_epoch)
            return weighted_f1(val.y, predicted, len(CLASS_NAMES))
        finally:
            keras.backend.clear_session()

    before = len(study.trials)
    start = time.perf_counter()
    study.optimize(
        objective, n_trials=n_trials, timeout=timeout, catch=(TrainingError,), gc_after_trial=True
    )
    log.info("study %s: %d trials in %.0f s", study_name, n_trials, time.perf_counter() - start)
    outcome = StudyOutcome(study_name, shown_storage(storage), len(study.trials) - before)
    outcome.trials = [_trial_row(t) for t in study.trials]
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        raise TuningError(
            f"no trial of study {study_name!r} completed ({outcome.summary()['states']}): "
            "see the trials' log lines"
        )
    best = study.best_trial
    outcome.best = {"number": best.number, "value": best.value, "values": best.user_attrs["values"]}
    outcome.best_run = tuned_run(base, backbone, best.user_attrs["values"])
    _run_config(outcome.best_run)  # what `braintumor train` will validate
    return outcome


def _trial_row(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    seconds = (
        (trial.datetime_complete - trial.datetime_start).total_seconds()
        if trial.datetime_complete and trial.datetime_start
        else None
    )
    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": trial.value,
        "values": trial.user_attrs.get("values", {}),
        "epochs": (trial.last_step + 1) if trial.last_step is not None else 0,
        "seconds": None if seconds is None else round(seconds, 1),
    }


def best_config_document(
    document: dict[str, Any], best_run: dict[str, Any], note: str
) -> tuple[str, dict[str, Any]]:
    """The best trial as a YAML run config: `document` (the tuned run config) with its
    `parameters.run` replaced, headed by `note` as a comment."""
    import copy

    import yaml

    tuned = copy.deepcopy(document)
    tuned.setdefault("parameters", {})["run"] = best_run
    header = "".join(f"# {line}\n" for line in note.splitlines())
    return header + yaml.safe_dump(tuned, sort_keys=False), tuned


__all__ = [
    "Choice",
    "FloatRange",
    "IntRange",
    "PrunerConfig",
    "StudyOutcome",
    "TuningConfig",
    "TuningError",
    "best_config_document",
    "link_images",
    "run_study",
    "tuned_run",
    "tuning_rows",
]
