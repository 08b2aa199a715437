"""train_model: learns, keeps the best weights, runs two phases from weights, reproducible."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from braintumor.models.backbones import base_model, build_classifier
from braintumor.models.inference import predict_proba
from braintumor.models.precision import is_float32
from braintumor.training.config import TrainingConfig
from braintumor.training.dataset import ArraySplit
from braintumor.training.runtime import choose_runtime
from braintumor.training.trainer import EpochReport, TrainingError, train_model
from tests.training_helpers import square_images

SMALL = {
    "preprocessing": {"image_size": 32, "channels": 1},
    "cnn": {
        "filters": [8, 16],
        "convs_per_block": 1,
        "block_dropout": 0.0,
        "batch_norm_momentum": 0.7,
    },
    "head": {"dropout": 0.0, "pooling": "max"},
    "batch_size": 16,
    "learning_rate": 1e-2,
    "augmentation": {"enabled": False},
}


def small_config(**changes) -> TrainingConfig:
    return TrainingConfig.model_validate({**SMALL, **changes})


@pytest.fixture(scope="module")
def data() -> tuple[ArraySplit, ArraySplit]:
    return square_images(256, seed=0), square_images(64, seed=1)


def test_from_scratch_learns_reports_every_epoch_and_restores_the_best(data, tmp_path) -> None:
    reports: list[EpochReport] = []
    result = train_model(
        small_config(epochs=10), data, progress=reports.append, checkpoint_dir=tmp_path
    )
    val = data[1]
    assert result.phases == ["train"]
    assert [r.epoch for r in reports] == list(range(1, result.epochs_run + 1))
    assert all({"loss", "val_loss", "accuracy", "learning_rate"} <= set(r.metrics) for r in reports)
    assert len(result.history["val_loss"]) == result.epochs_run
    assert result.history["phase"] == ["train"] * result.epochs_run
    assert result.best_val_loss == min(result.history["val_loss"])
    assert result.best_epoch == 1 + int(np.argmin(result.history["val_loss"]))
    probs = predict_proba(result.model, val.x)
    assert (probs.argmax(1) == val.y).mean() >= 0.75  # chance: 0.25
    # The returned model carries the best epoch's weights (not the last epoch's).
    loss = keras.losses.CategoricalCrossentropy()(np.eye(4)[val.y], probs)
    assert float(loss) == pytest.approx(result.best_val_loss, rel=1e-3)
    assert (tmp_path / "best.weights.h5").is_file()
    assert result.seconds > 0 and not result.runtime.mixed_precision


def test_same_seed_same_model(data) -> None:
    first = train_model(small_config(epochs=2), data, progress=None)
    second = train_model(small_config(epochs=2), data, progress=None)
    for a, b in zip(first.model.get_weights(), second.model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_weights_file_trains_head_on_frozen_base_then_fine_tunes_the_top(data, tmp_path) -> None:
    source = build_classifier("custom_cnn", input_shape=(32, 32, 1), cnn=small_config().cnn.spec())
    base_file = tmp_path / "base.weights.h5"
    base_model(source).save_weights(base_file)
    saved = base_model(source).get_weights()

    head_only = train_model(
        small_config(epochs=2, weights=str(base_file), fine_tune={"epochs": 0}), data, progress=None
    )
    assert head_only.phases == ["head"]
    for before, after in zip(saved, base_model(head_only.model).get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)  # the frozen base did not move

    config = small_config(
        epochs=1,
        weights=str(base_file),
        fine_tune={"epochs": 2, "unfreeze_top_layers": 4, "learning_rate": 1e-3},
        early_stopping={"patience": 5},
    )
    tuned = train_model(config, data, progress=None)
    assert tuned.phases == ["head", "fine_tune"]
    assert tuned.history["phase"][:1] == ["head"]
    assert "fine_tune" in tuned.history["phase"]
    layers = {layer.name: layer for layer in base_model(tuned.model).layers}
    first_conv = layers["block1_conv1"].get_weights()[0]
    np.testing.assert_array_equal(
        first_conv, base_model(source).get_layer("block1_conv1").get_weights()[0]
    )
    assert layers["block2_conv1"].trainable and not layers["block1_conv1"].trainable
    assert not layers["block2_bn1"].trainable  # batch norm stays frozen when fine-tuning
    last_conv = layers["block2_conv1"].get_weights()[0]
    if tuned.best_epoch > 1:  # the best weights come from fine-tuning: the top moved
        assert not np.array_equal(
            last_conv, base_model(source).get_layer("block2_conv1").get_weights()[0]
        )


def test_balancing_and_focal_loss_reach_the_training_loop(data) -> None:
    train, val = data
    unbalanced = ArraySplit(
        train.x[train.y != 2][:60], train.y[train.y != 2][:60], train.paths[:60]
    )
    keep = np.concatenate([np.flatnonzero(train.y == 2)[:5]])
    skewed = ArraySplit(
        np.concatenate([unbalanced.x, train.x[keep]]),
        np.concatenate([unbalanced.y, train.y[keep]]),
        unbalanced.paths + [train.paths[i] for i in keep],
    )
    config = small_config(
        epochs=1, balancing={"strategy": "oversample", "focal": {"enabled": True, "gamma": 2.0}}
    )
    result = train_model(config, (skewed, val), progress=None)
    counts = result.train_class_counts
    assert counts[2] == max(counts) and len(set(counts)) == 1
    assert isinstance(result.model.loss, keras.losses.CategoricalFocalCrossentropy)


def test_balancing_within_appearance_groups_reaches_the_training_loop(data, monkeypatch) -> None:
    from braintumor.training import balancing, trainer

    seen = {}
    real = balancing.group_class_weights

    def spy(y, groups, num_classes, max_weight=10.0):
        seen["groups"] = groups
        return real(y, groups, num_classes, max_weight)

    monkeypatch.setattr(balancing, "group_class_weights", spy)
    monkeypatch.setattr(trainer, "appearance_groups", lambda x: np.arange(len(x)) % 2)
    config = small_config(epochs=1, balancing={"appearance_groups": True, "group_max_weight": 3})
    train_model(config, data, progress=None)
    assert len(seen["groups"]) == len(data[0].y)


def test_mixed_precision_trains_in_float16_and_returns_a_float32_model(data, monkeypatch) -> None:
    from braintumor.training import trainer

    built = []
    original = trainer.build_model
    monkeypatch.setattr(
        trainer, "build_model", lambda *a, **k: built.append(original(*a, **k)) or built[-1]
    )
    result = train_model(small_config(epochs=1, mixed_precision="on"), data, progress=None)
    assert result.runtime.mixed_precision
    # Trained in float16 with a float32 softmax...
    layers = {layer.name: layer for layer in built[0].layers}
    assert layers["predictions"].dtype_policy.name == "float32"
    assert base_model(built[0]).layers[1].dtype_policy.name == "mixed_float16"
    # ...handed on in float32 (evaluation, ONNX export and serving compute the same thing).
    assert is_float32(result.model) and result.model is not built[0]
    for ours, trained in zip(result.model.get_weights(), built[0].get_weights(), strict=True):
        np.testing.assert_array_equal(ours, trained)
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored


def test_runtime_choice_follows_the_gpus() -> None:
    assert choose_runtime(0) == choose_runtime(0, "auto", "auto")
    cpu = choose_runtime(0)
    assert not cpu.mixed_precision and not cpu.mirrored
    one = choose_runtime(1)
    assert one.mixed_precision and not one.mirrored
    many = choose_runtime(4)
    assert many.mixed_precision and many.mirrored
    assert not choose_runtime(4, "off", "off").mixed_precision
    assert not choose_runtime(4, "off", "off").mirrored
    assert choose_runtime(0, "on").mixed_precision
    assert choose_runtime(0, "bfloat16", native_bf16_cpu=True).dtype_policy == "mixed_bfloat16"
    assert choose_runtime(0, "bfloat16").dtype_policy == "float32"  # emulated: slower
    assert choose_runtime(1, "bfloat16").dtype_policy == "mixed_bfloat16"
    assert choose_runtime(0).dtype_policy == "float32"
    assert one.dtype_policy == "mixed_float16"


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    from braintumor.training.runtime import BF16_CPU_FLAGS, cpu_flags

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    assert cpu_flags(info) == {"fpu", "avx2", "avx512f", "avx512_bf16"}
    assert cpu_flags(info) & BF16_CPU_FLAGS
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2\n")
    assert not cpu_flags(info) & BF16_CPU_FLAGS
    assert cpu_flags(tmp_path / "absent") == frozenset()


def test_unusable_data_is_refused_before_training(data) -> None:
    train, val = data
    empty = ArraySplit(val.x[:0], val.y[:0], [])
    with pytest.raises(TrainingError, match="validation split is empty"):
        train_model(small_config(), (train, empty), progress=None)
    with pytest.raises(TrainingError, match="config expects"):
        train_model(small_config(preprocessing={"image_size": 48}), data, progress=None)


def test_checkpoint_dir_is_created(tmp_path: Path, data) -> None:
    target = tmp_path / "deep" / "run"
    train_model(small_config(epochs=1), data, progress=None, checkpoint_dir=target)
    assert (target / "best.weights.h5").stat().st_size > 0


def test_one_cycle_schedule_warms_up_then_anneals_and_runs_every_epoch(data) -> None:
    from braintumor.training.trainer import learning_rate

    config = small_config(
        epochs=6,
        lr_schedule={"kind": "onecycle", "warmup_fraction": 0.25},
        early_stopping={"patience": 0},
    )
    schedule = learning_rate(config, 1e-2, total_steps=100)
    rates = [float(schedule(step)) for step in range(101)]
    assert rates[0] == pytest.approx(1e-2 / 25)
    assert max(rates) == pytest.approx(1e-2) and int(np.argmax(rates)) == 25
    assert np.all(np.diff(rates[:26]) >= -1e-12)  # warm-up: rising
    assert np.all(np.diff(rates[25:]) <= 1e-12)  # annealing: falling
    assert rates[100] < 1e-5
    assert learning_rate(small_config(), 1e-3, 100) == 1e-3  # plateau: a plain rate

    reports: list[EpochReport] = []
    result = train_model(config, data, progress=reports.append)
    assert result.epochs_run == 6  # no early stopping
    seen = [r.metrics["learning_rate"] for r in reports]
    assert seen[-1] < seen[1] and max(seen) > seen[0]


def test_weight_average_warms_up_then_follows_the_decay() -> None:
    from braintumor.training.ema import WeightAverage

    average = WeightAverage([np.zeros(2, np.float32)], decay=0.5)
    average.update([np.ones(2, np.float32)])  # decay min(0.5, 2/11) = 2/11
    np.testing.assert_allclose(average.weights([np.zeros(2, np.float32)])[0], 9 / 11)
    average.update([np.zeros(2, np.float32)])  # decay min(0.5, 3/12) = 0.25
    np.testing.assert_allclose(average.average[0], 0.25 * 9 / 11)
    for _ in range(20):  # from here the decay is capped at 0.5
        average.update([np.full(2, 4.0, np.float32)])
    np.testing.assert_allclose(average.average[0], 4.0, atol=1e-4)
    assert average.weights([np.zeros(2, np.float32)])[0].dtype == np.float32


def test_ema_validates_and_returns_the_average_without_changing_the_training(data) -> None:
    plain = train_model(small_config(epochs=4), data, progress=None)
    reports: list[EpochReport] = []
    ema = train_model(small_config(epochs=4, ema_decay=0.9), data, progress=reports.append)
    # The live weights train exactly as without the average (restored before every epoch).
    np.testing.assert_allclose(ema.history["loss"], plain.history["loss"], rtol=1e-4)
    np.testing.assert_allclose(ema.history["val_loss_live"], plain.history["val_loss"], rtol=1e-4)
    # What is validated, tracked and returned is the average, which differs from the live model.
    assert not np.allclose(ema.history["val_loss"], ema.history["val_loss_live"])
    assert ema.best_val_loss == min(ema.history["val_loss"])
    val = data[1]
    probs = predict_proba(ema.model, val.x)
    loss = keras.losses.CategoricalCrossentropy()(np.eye(4)[val.y], probs)
    assert float(loss) == pytest.approx(ema.best_val_loss, rel=1e-3)
    assert all("val_accuracy_live" in r.metrics for r in reports)


def test_calibrate_model_is_one_joint_fit_folded_into_the_softmax_bias(data) -> None:
    from braintumor.evaluation.calibration import (
        calibrate,
        fit_class_bias,
        fit_temperature,
        shift_logits,
    )
    from braintumor.models.calibrated import calibrate_model

    val = data[1]
    plain = train_model(small_config(epochs=2), data, progress=None)
    flagged = train_model(small_config(epochs=2, refit_class_bias=True), data, progress=None)
    before = predict_proba(plain.model, val.x)
    # Training no longer calibrates: same seed, same model, with or without the flag.
    np.testing.assert_allclose(predict_proba(flagged.model, val.x), before, atol=1e-6)
    calibration = calibrate_model(plain.model, val.x, val.y, class_offsets=True)
    after = predict_proba(plain.model, val.x)
    temperature, bias = fit_class_bias(before, val.y)
    assert calibration.temperature == pytest.approx(temperature, rel=1e-6)
    assert calibration.class_offsets == pytest.approx(tuple(bias), abs=1e-6)
    # T*b went into the softmax bias; the served answer softmax(logits / T) is the joint fit.
    np.testing.assert_allclose(after, shift_logits(before, temperature * bias), atol=1e-4)
    served = calibrate(after, calibration.temperature)
    np.testing.assert_allclose(served, calibration.apply(before), atol=1e-4)
    # The second temperature fit the pipeline used to make on top found the same T.
    assert fit_temperature(after, val.y) == pytest.approx(temperature, rel=1e-2)


def test_calibrate_model_fits_the_temperature_alone_when_a_class_has_too_few_images(data) -> None:
    from braintumor.evaluation.calibration import fit_temperature
    from braintumor.models.calibrated import calibrate_model

    train, val = data
    few = ArraySplit(val.x[:20], val.y[:20], val.paths[:20])
    result = train_model(small_config(epochs=1), (train, few), progress=None)
    before = predict_proba(result.model, few.x)
    calibration = calibrate_model(result.model, few.x, few.y, class_offsets=True)
    assert calibration.class_offsets is None and calibration.logit_shift is None
    assert calibration.temperature == pytest.approx(fit_temperature(before, few.y))
    np.testing.assert_array_equal(predict_proba(result.model, few.x), before)  # untouched
