"""`train_model(config, data)`: one training run of one backbone, start to best weights.

- From scratch (`weights: null`): one phase, every layer trains.
- From weights (`imagenet` or a file): phase 1 trains the head on a frozen base; phase 2
  unfreezes the top `fine_tune.unfreeze_top_layers` layers of the base (batch norm stays
  frozen) at `fine_tune.learning_rate`.
- Each phase stops early on validation loss and lowers the learning rate on plateaus. The
  weights with the lowest validation loss over both phases are restored at the end (and
  written to `checkpoint_dir/best.weights.h5` when given).
- On GPUs: mixed precision (float16 compute, float32 softmax) and `MirroredStrategy` across
  more than one GPU, chosen automatically (`training.runtime.choose_runtime`); bfloat16 on
  request where it is native. Mixed precision is for training only: the returned model is
  float32.
- `ema_decay > 0`: an exponential moving average of the weights (batch-norm statistics
  included) is kept after every step, and it is the EMA weights that are validated, tracked
  as the best and returned: a smoother model (`training.ema`). It costs a weight copy per
  step and a second validation pass per epoch (the live weights are still validated, as
  `val_loss_live`).
- The returned model is uncalibrated: temperature and class offsets (`refit_class_bias`)
  are fitted once afterwards, on validation (`braintumor.models.calibrated.calibrate_model`;
  the pipeline's calibrate step, after the winner is chosen).
- Seeds: Python, NumPy and TensorFlow are seeded from `config.seed`; shuffling and
  augmentation are seeded streams; `config.deterministic` also makes TF ops deterministic.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from braintumor.constants import CLASS_NAMES
from braintumor.models.precision import as_float32, global_dtype_policy
from braintumor.training.config import TrainingConfig
from braintumor.training.dataset import ArraySplit, SplitArrays, make_dataset, steps_per_epoch
from braintumor.training.ema import ema_callback
from braintumor.training.runtime import (
    BF16_CPU_FLAGS,
    Runtime,
    choose_runtime,
    cpu_flags,
    seed_everything,
)

log = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    """A run that cannot start (no validation data, ...) or that diverged."""


@dataclass(frozen=True)
class EpochReport:
    """What a progress callback hears after every epoch."""

    phase: str  # "train" (from scratch), "head" (frozen base) or "fine_tune"
    epoch: int  # 1-based, counted across phases
    max_epochs: int
    seconds: float
    metrics: dict[str, float]


@dataclass
class TrainResult:
    """The trained model (best weights restored) and how it got there."""

    model: Any  # keras.Model
    history: dict[str, list[Any]]  # per epoch, across phases; "phase" says which
    seconds: float
    epochs_run: int
    best_epoch: int  # 1-based
    best_val_loss: float
    runtime: Runtime
    class_names: tuple[str, ...]
    train_class_counts: list[int]  # after balancing
    phases: list[str] = field(default_factory=list)


ProgressFn = Callable[[EpochReport], None]


def log_progress(report: EpochReport) -> None:
    shown = " ".join(f"{k}={v:.4g}" for k, v in report.metrics.items())
    log.info(
        "[%s] epoch %d/%d %.1fs %s",
        report.phase,
        report.epoch,
        report.max_epochs,
        report.seconds,
        shown,
    )


def _callbacks(
    config: TrainingConfig, phase: str, tracker, progress: ProgressFn | None, total, ema=None
):
    import keras

    class _Progress(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            metrics = {k: float(v) for k, v in (logs or {}).items()}
            metrics["learning_rate"] = float(
                keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
            )
            if not all(math.isfinite(v) for v in metrics.values()):
                self.model.stop_training = True
                tracker.diverged = True
            report = EpochReport(
                phase, epoch + 1, total, time.perf_counter() - self._start, metrics
            )
            tracker.record(report, self.model)
            if progress is not None:
                progress(report)

    callbacks: list[Any] = ([] if ema is None else [ema]) + [_Progress()]
    if config.early_stopping.patience > 0:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss",
                patience=config.early_stopping.patience,
                min_delta=config.early_stopping.min_delta,
            )
        )
    if config.lr_schedule.kind == "plateau":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss",
                factor=config.reduce_lr.factor,
                patience=config.reduce_lr.patience,
                min_lr=config.reduce_lr.min_lr,
            )
        )
    return callbacks


def learning_rate(config: TrainingConfig, peak: float, total_steps: int) -> Any:
    """A float (plateau) or a one-cycle schedule over `total_steps` (see ScheduleConfig)."""
    import keras

    if config.lr_schedule.kind == "plateau":
        return peak
    warmup = max(1, round(config.lr_schedule.warmup_fraction * total_steps))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=peak / 25.0,
        decay_steps=max(1, total_steps - warmup),
        alpha=1e-4,
        warmup_target=peak,
        warmup_steps=warmup,
    )


class _BestTracker:
    """Keeps the weights of the lowest validation loss across phases, and the history."""

    def __init__(self, checkpoint: Path | None) -> None:
        self.best_loss = math.inf
        self.best_epoch = 0
        self.best_weights: list[np.ndarray] | None = None
        self.history: dict[str, list[Any]] = {}
        self.phase_of_epoch: list[str] = []
        self.checkpoint = checkpoint
        self.diverged = False

    def record(self, report: EpochReport, model) -> None:
        self.phase_of_epoch.append(report.phase)
        for key, value in report.metrics.items():
            self.history.setdefault(key, []).append(value)
        self.history.setdefault("seconds", []).append(report.seconds)
        loss = report.metrics.get("val_loss", math.inf)
        if math.isfinite(loss) and loss < self.best_loss:
            self.best_loss, self.best_epoch = loss, report.epoch
            self.best_weights = [np.array(w) for w in model.get_weights()]
            if self.checkpoint is not None:
                model.save_weights(self.checkpoint)


def make_optimizer(name: str, learning_rate, weight_decay: float = 0.0):
    import keras

    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay or 1e-4)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.9, nesterov=True)
    raise ValueError(f"unknown optimizer {name!r}; choose adam, adamw or sgd")


def build_model(config: TrainingConfig, num_classes: int):
    """The classifier `config` describes (weights loaded, nothing frozen yet)."""
    from braintumor.models.backbones import build_classifier

    return build_classifier(
        config.backbone,
        input_shape=config.input_shape(),
        num_classes=num_classes,
        weights=config.weights,
        head=config.head.spec(),
        cnn=config.cnn.spec(),
    )


def train_model(
    config: TrainingConfig,
    data: SplitArrays | tuple[ArraySplit, ArraySplit],
    *,
    class_names: tuple[str, ...] | None = None,
    progress: ProgressFn | None = log_progress,
    checkpoint_dir: str | Path | None = None,
    callbacks: Sequence[Any] = (),
) -> TrainResult:
    """Train `config.backbone` on `data.train`, validating on `data.val`.

    Args:
        config: the validated run configuration.
        data: `SplitArrays` (from `load_split_arrays`) or a (train, val) pair of `ArraySplit`.
        class_names: softmax order (default: the data's, else `CLASS_NAMES`).
        progress: called after every epoch with an `EpochReport` (default: logs a line).
        checkpoint_dir: where to keep `best.weights.h5` (optional; the best weights are
            restored into the returned model either way).
        callbacks: further Keras callbacks, run after the built-in ones at every epoch's end
            (so they see the weights that are validated: the average when `ema_decay > 0`);
            e.g. the tuner's pruning callback.

    Raises:
        TrainingError: the validation split is empty, or the loss became NaN/inf.
    """
    import tensorflow as tf

    from braintumor.models.backbones import freeze_base, set_trainable_top
    from braintumor.training.balancing import balance, make_loss

    train, val = (data.train, data.val) if isinstance(data, SplitArrays) else data
    names = class_names or (data.class_names if isinstance(data, SplitArrays) else CLASS_NAMES)
    num_classes = len(names)
    if len(val) == 0:
        raise TrainingError("the validation split is empty: early stopping needs it")
    expected = config.input_shape()
    if tuple(train.x.shape[1:]) != expected or tuple(val.x.shape[1:]) != expected:
        raise TrainingError(
            f"images are {train.x.shape[1:]} but the config expects {expected}: load the arrays "
            "with the config's preprocessing spec"
        )

    seed_everything(config.seed, config.deterministic)
    runtime = choose_runtime(
        len(tf.config.list_physical_devices("GPU")),
        config.mixed_precision,
        config.distribute,
        native_bf16_cpu=bool(cpu_flags() & BF16_CPU_FLAGS),
    )
    if config.mixed_precision == "bfloat16" and not runtime.mixed_precision:
        log.warning("bfloat16 requested but this CPU has no native bfloat16: using float32")
    strategy = (
        tf.distribute.MirroredStrategy() if runtime.mirrored else tf.distribute.get_strategy()
    )
    bal = config.balancing
    balanced = balance(
        train.x,
        train.y,
        num_classes,
        bal.strategy,
        target_ratio=bal.target_ratio,
        smote_neighbors=bal.smote_neighbors,
        smote_image_size=bal.smote_image_size,
        seed=config.seed,
        groups=appearance_groups(train.x) if bal.appearance_groups else None,
        group_max_weight=bal.group_max_weight,
    )
    batch_size = config.batch_size * max(1, strategy.num_replicas_in_sync)
    train_ds = make_dataset(
        balanced.x,
        balanced.y,
        num_classes=num_classes,
        batch_size=batch_size,
        training=True,
        augment=config.augmentation.spec(),
        sample_weight=balanced.sample_weight,
        seed=config.seed,
    )
    val_ds = make_dataset(
        val.x, val.y, num_classes=num_classes, batch_size=batch_size, training=False
    )
    steps = steps_per_epoch(len(balanced.y), batch_size)
    loss = make_loss(
        focal=bal.focal.enabled,
        gamma=bal.focal.gamma,
        alpha=bal.focal.alpha,
        label_smoothing=config.label_smoothing,
    )
    checkpoint = None
    if checkpoint_dir is not None:
        Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
        checkpoint = Path(checkpoint_dir) / "best.weights.h5"
    tracker = _BestTracker(checkpoint)

    with global_dtype_policy(runtime.dtype_policy), strategy.scope():
        model = build_model(config, num_classes)

    def compile_for(rate: Any) -> None:
        with strategy.scope():
            model.compile(
                optimizer=make_optimizer(config.optimizer, rate, config.weight_decay),
                loss=loss,
                metrics=["accuracy"],
                jit_compile=config.jit_compile,
            )

    def make_ema():
        if config.ema_decay <= 0:
            return None
        onehot = np.eye(num_classes, dtype=np.float32)[val.y]
        return ema_callback(config.ema_decay, val.x, onehot, loss)

    phases: list[tuple[str, int, float]] = []
    if config.pretrained:
        phases.append(("head", config.epochs, config.learning_rate))
        if config.fine_tune.epochs > 0:
            phases.append(("fine_tune", config.fine_tune.epochs, config.fine_tune.learning_rate))
    else:
        phases.append(("train", config.epochs, config.learning_rate))
    total = sum(epochs for _, epochs, _ in phases)

    start = time.perf_counter()
    epoch = 0
    for phase, epochs, peak in phases:
        if phase == "head":
            freeze_base(model)
        elif phase == "fine_tune":
            set_trainable_top(model, config.fine_tune.unfreeze_top_layers)
        compile_for(learning_rate(config, peak, epochs * steps))
        history = model.fit(
            train_ds,
            steps_per_epoch=steps,
            validation_data=val_ds,
            epochs=epoch + epochs,
            initial_epoch=epoch,
            callbacks=[
                *_callbacks(config, phase, tracker, progress, total, ema=make_ema()),
                *callbacks,
            ],
            shuffle=False,  # the dataset shuffles itself, seeded
            verbose=0,
        )
        epoch += len(history.epoch)
        if tracker.diverged:
            raise TrainingError(
                f"training diverged in phase {phase!r} at epoch {epoch} (loss is NaN or inf): "
                "lower the learning rate"
            )
    seconds = time.perf_counter() - start
    if tracker.best_weights is not None:
        model.set_weights(tracker.best_weights)
    # Mixed precision is for training speed only: evaluation, export and serving use float32.
    model = as_float32(model)
    tracker.history["phase"] = tracker.phase_of_epoch  # type: ignore[assignment]
    return TrainResult(
        model=model,
        history=tracker.history,
        seconds=seconds,
        epochs_run=epoch,
        best_epoch=tracker.best_epoch,
        best_val_loss=tracker.best_loss,
        runtime=runtime,
        class_names=tuple(names),
        train_class_counts=balanced.class_counts(num_classes).tolist(),
        phases=[name for name, _, _ in phases],
    )


def appearance_groups(x: np.ndarray) -> np.ndarray:
    """The audit's sequence-type group (t1_like, t2_like, bright_tissue) of each training
    image (N, H, W, C) in [0, 255], for `balancing.appearance_groups`."""
    from braintumor.integrity.appearance import appearance_table, sequence_group

    grays = [np.clip(image[..., 0], 0, 255).astype(np.uint8) for image in np.asarray(x)]
    return sequence_group(appearance_table(grays)).to_numpy()
