"""An exponential moving average of a model's weights over the training steps
(`TrainingConfig.ema_decay`), validated every epoch in place of the live weights."""

from __future__ import annotations

import math

import numpy as np

from braintumor.models.inference import predict_proba


class WeightAverage:
    """An exponential moving average of every weight of a model, kept in NumPy.

    The decay warms up as min(decay, (1 + t) / (10 + t)) after t updates, so the first
    steps are not dominated by the initial weights.
    """

    def __init__(self, weights: list[np.ndarray], decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.average = [np.array(w, dtype=np.float64) for w in weights]

    def update(self, weights: list[np.ndarray]) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for average, current in zip(self.average, weights, strict=True):
            average *= decay
            average += (1.0 - decay) * current

    def weights(self, like: list[np.ndarray]) -> list[np.ndarray]:
        return [a.astype(w.dtype) for a, w in zip(self.average, like, strict=True)]


def ema_callback(decay: float, val_x: np.ndarray, val_onehot: np.ndarray, loss_fn):
    """Keeps a `WeightAverage` over the training steps. At each epoch's end it puts the
    averaged weights into the model and validates them (`val_loss`, `val_accuracy`; the
    live weights' figures stay as `val_loss_live`, `val_accuracy_live`), so the callbacks
    after it (best tracking, early stopping, progress) see the averaged model; the live
    weights come back before the next epoch trains."""
    import keras

    class _Ema(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.average = WeightAverage(self.model.get_weights(), decay)
            self.live: list[np.ndarray] | None = None

        def on_train_batch_end(self, batch, logs=None):
            self.average.update(self.model.get_weights())

        def on_epoch_end(self, epoch, logs=None):
            if logs is None:
                return
            self.live = self.model.get_weights()
            self.model.set_weights(self.average.weights(self.live))
            probs = predict_proba(self.model, val_x)
            logs["val_loss_live"] = logs.get("val_loss", math.nan)
            logs["val_accuracy_live"] = logs.get("val_accuracy", math.nan)
            logs["val_loss"] = float(keras.ops.convert_to_numpy(loss_fn(val_onehot, probs)))
            logs["val_accuracy"] = float((probs.argmax(1) == val_onehot.argmax(1)).mean())

        def _restore(self):
            if self.live is not None:
                self.model.set_weights(self.live)
                self.live = None

        def on_epoch_begin(self, epoch, logs=None):
            self._restore()

        def on_train_end(self, logs=None):
            self._restore()

    return _Ema()
