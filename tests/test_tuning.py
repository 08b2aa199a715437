"""The tuning library: the search space in the run config, the best trial as a run config,
no test rows, no mixing of studies, and per-epoch pruning in a real one-trial study on the
shipped sample (tiny CNN). A whole study, resumed, runs in test_study_pipelines.py."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from braintumor.run_config import RunConfig
from braintumor.tuning import TuningError, best_config_document, run_study, tuned_run, tuning_rows
from braintumor_zenml.launch import read_run_config
from tests.training_helpers import sample_splits

ROOT = Path(__file__).resolve().parents[1]

SPACE = {
    "learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    "head.dropout": {"type": "float", "low": 0.0, "high": 0.5},
    "augmentation.contrast": {"type": "float", "low": 0.0, "high": 0.3},
    "cnn.filters": {"type": "categorical", "choices": [[8, 16], [4, 8]]},
}


def _document() -> dict:
    """configs/smoke.yaml, one backbone, with a search space."""
    document = yaml.safe_load((ROOT / "configs" / "smoke.yaml").read_text())
    run = document["parameters"]["run"]
    run["backbones"] = ["custom_cnn"]
    run["tuning"] = {"space": copy.deepcopy(SPACE), "pruner": {"kind": "none"}}
    return document


@pytest.fixture(scope="module")
def rows(sample_dir: Path):
    return tuning_rows(sample_splits(sample_dir))  # Training -> train, Testing -> val


def test_search_space_is_validated_against_the_training_settings() -> None:
    run = _document()["parameters"]["run"]
    config = RunConfig(**run)
    assert config.tuning.space["cnn.filters"].choices == [[8, 16], [4, 8]]
    bad = {
        "head.dropot": {"type": "float", "low": 0.1, "high": 0.2},  # no such field
        "head.dropout": {"type": "float", "low": 0.1, "high": 1.0},  # dropout < 1
        "learning_rate": {"type": "float", "low": 0.0, "high": 0.1, "log": True},
        "epochs": {"type": "int", "low": 5, "high": 2},
        "preprocessing.clahe_clip_limit": {"type": "float", "low": 1, "high": 2},
    }
    for path, parameter in bad.items():
        with pytest.raises(ValueError, match=r"tuning\.space"):
            RunConfig(**{**run, "tuning": {"space": {path: parameter}}})
    with pytest.raises(ValueError, match="not among backbones"):
        RunConfig(**{**run, "tuning": {"space": SPACE, "backbone": "mobilenetv2"}})


def test_tuned_run_puts_the_values_over_the_backbones_own_settings() -> None:
    run = _document()["parameters"]["run"]
    run["backbones"] = ["custom_cnn", "mobilenetv2"]
    run["overrides"] = {"custom_cnn": {"learning_rate": 0.5, "batch_size": 4}}
    tuned = tuned_run(run, "custom_cnn", {"learning_rate": 0.002, "head.dropout": 0.4})
    assert tuned["backbones"] == ["custom_cnn"] and "tuning" not in tuned
    assert "overrides" not in tuned
    config = RunConfig(**tuned).training_config("custom_cnn")
    assert config.learning_rate == 0.002 and config.batch_size == 4
    assert config.head.dropout == 0.4 and config.head.dense_units == 0


def test_a_study_about_other_data_is_not_continued(rows, sample_dir: Path, tmp_path) -> None:
    import optuna

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    study.set_user_attr("context", {"data_hash": "d1", "backbone": "custom_cnn"})
    run = _document()["parameters"]["run"]
    with pytest.raises(TuningError, match=r"other settings \{'data_hash': \('d1', 'd2'\)\}"):
        run_study(
            run,
            rows,
            sample_dir,
            n_trials=1,
            storage=storage,
            study_name="s",
            context={"data_hash": "d2"},
        )
    assert optuna.load_study(study_name="s", storage=storage).trials == []


def test_the_best_trial_becomes_a_run_config_that_train_accepts(tmp_path: Path) -> None:
    document = _document()
    values = {"learning_rate": 0.003, "head.dropout": 0.25, "cnn.filters": [4, 8]}
    best = tuned_run(document["parameters"]["run"], "custom_cnn", values)
    text, _ = best_config_document(document, best, "best trial 3 of study smoke\nline two")
    path = tmp_path / "best.yaml"
    path.write_text(text)
    assert text.startswith("# best trial 3 of study smoke\n# line two\n")
    _, config = read_run_config(path)  # what `braintumor train` validates
    assert config.backbones == ["custom_cnn"] and config.tuning is None
    trained = config.training_config("custom_cnn")
    assert trained.learning_rate == 0.003 and trained.head.dropout == 0.25
    assert trained.cnn.filters == (4, 8) and trained.epochs == 1  # the rest as configured
    assert config.gate.policy_overrides.min_weighted_f1 == 0.0


def test_tuning_refuses_test_rows(rows, sample_dir: Path, tmp_path: Path) -> None:
    leaky = rows.copy()
    leaky.loc[0, "split"] = "test"
    with pytest.raises(TuningError, match="not split"):
        run_study(
            _document()["parameters"]["run"],
            leaky,
            sample_dir,
            n_trials=1,
            storage=f"sqlite:///{tmp_path / 'o.db'}",
            study_name="s",
        )


def test_each_epoch_is_reported_and_a_pruned_trial_stops(
    rows, sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import optuna

    from braintumor.tuning import PrunerConfig

    class AlwaysPrune(optuna.pruners.BasePruner):
        def prune(self, study, trial) -> bool:
            return True

    monkeypatch.setattr(PrunerConfig, "pruner", lambda self: AlwaysPrune())
    run = _document()["parameters"]["run"]
    run["training"]["epochs"] = 3
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    with pytest.raises(TuningError, match=r"no trial .* completed.*PRUNED"):
        run_study(run, rows, sample_dir, n_trials=1, storage=storage, study_name="p")
    (trial,) = optuna.load_study(study_name="p", storage=storage).trials
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert list(trial.intermediate_values) == [0]  # epoch 1 reported, then stopped
    assert 0.0 <= trial.intermediate_values[0] <= 1.0
