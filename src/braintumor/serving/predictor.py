"""The model behind the service: load a packaged model, predict on preprocessed batches, and
the pure rules that turn probabilities into an answer (calibration, `needs_review`).

The fastest runtime the model-store entry holds is used: `model.int8.onnx` (quantized, shipped
only when it answered like Keras, see `optimize`), then `model.onnx`, both with ONNX Runtime
(fast start, no TensorFlow import on the predict path), else the Keras model. The Keras model
is loaded lazily for Grad-CAM, which needs gradients.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from braintumor.evaluation.calibration import calibrate
from braintumor.serving.metadata import ModelCard

MODEL_FILE = "model.keras"
ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
CARD_FILE = "card.json"

Backend = Literal["auto", "onnx-int8", "onnx", "keras"]
BACKENDS: tuple[str, ...] = ("auto", "onnx-int8", "onnx", "keras")
FILES: dict[str, str] = {"onnx-int8": INT8_FILE, "onnx": ONNX_FILE, "keras": MODEL_FILE}


class ModelLoadError(RuntimeError):
    """A packaged model that cannot be served (missing file, wrong shape, bad output)."""


def needs_review(probs: Sequence[float] | np.ndarray, threshold: float) -> bool:
    """True when the top probability is below `threshold`: a person should look at it."""
    return bool(float(np.max(probs)) < threshold)


def top_class(probs: Sequence[float] | np.ndarray, class_names: Sequence[str]) -> tuple[str, float]:
    """The most probable class and its probability (ties go to the first class)."""
    index = int(np.argmax(probs))
    return class_names[index], float(probs[index])


def read_card(model_dir: str | Path) -> ModelCard:
    """The card stored next to the model (`card.json`), as written by `save_to_bentoml`."""
    path = Path(model_dir) / CARD_FILE
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing: package the model with save_to_bentoml()")
    return ModelCard.from_metadata(json.loads(path.read_text()))


def choose_backend(model_dir: str | Path, prefer: Backend = "auto") -> str:
    """The backend to serve with: `prefer`, or the fastest present (auto); errors name the
    missing file."""
    if prefer not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, not {prefer!r}")
    model_dir = Path(model_dir)
    if prefer != "auto":
        if not (model_dir / FILES[prefer]).is_file():
            raise ModelLoadError(
                f"backend {prefer!r} asked for but {model_dir / FILES[prefer]} is missing"
            )
        return prefer
    for backend, file in FILES.items():  # fastest first
        if (model_dir / file).is_file():
            return backend
    raise ModelLoadError(f"{model_dir} holds none of {', '.join(FILES.values())}")


def load_keras_model(path: str | Path) -> Any:
    """Load a `.keras` file safely (no Lambda layers, no pickled code)."""
    import keras

    import braintumor.models.layers  # noqa: F401  (registers the custom layers)

    return keras.saving.load_model(str(path), compile=False, safe_mode=True)


class Predictor:
    """Probabilities for batches of preprocessed images, from ONNX Runtime or Keras.

    Args:
        model_dir: A model-store entry's folder (`model.keras`, optional `model.onnx`).
        card: The model card; read from `model_dir/card.json` when omitted.
        backend: `auto` (ONNX when present), `onnx` or `keras`.
        threads: Intra-op threads for ONNX Runtime (None: its default, all cores).
    """

    def __init__(
        self,
        model_dir: str | Path,
        card: ModelCard | None = None,
        backend: Backend = "auto",
        threads: int | None = None,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.card = card if card is not None else read_card(self.model_dir)
        self.class_names = tuple(self.card.class_names)
        self.input_shape = self.card.input_shape
        self.backend = choose_backend(self.model_dir, backend)
        self._keras_model: Any = None
        self._keras_lock = threading.Lock()
        if self.backend != "keras":
            self._session, self._input_name = self._load_onnx(FILES[self.backend], threads)
        else:
            self._keras_model = load_keras_model(self.model_dir / MODEL_FILE)
        self._check_output()

    def _load_onnx(self, file: str, threads: int | None) -> tuple[Any, str]:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        if threads:
            options.intra_op_num_threads = int(threads)
        session = ort.InferenceSession(
            str(self.model_dir / file), options, providers=["CPUExecutionProvider"]
        )
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise ModelLoadError(f"{file} must take one input, it takes {len(inputs)}")
        return session, inputs[0].name

    def _check_output(self) -> None:
        """Run a blank image once: warms the model up and checks its output contract."""
        probs = self.predict_raw(np.zeros((1, *self.input_shape), dtype=np.float32))
        if probs.shape != (1, len(self.class_names)):
            raise ModelLoadError(
                f"the model outputs shape {probs.shape[1:]} but the card names "
                f"{len(self.class_names)} classes"
            )
        if not np.isclose(float(probs.sum()), 1.0, atol=1e-3) or float(probs.min()) < 0:
            raise ModelLoadError("the model must end with a softmax (rows summing to 1)")

    @property
    def keras_model(self) -> Any:
        """The Keras model (loaded on first use when ONNX serves predictions)."""
        if self._keras_model is None:
            with self._keras_lock:
                if self._keras_model is None:
                    path = self.model_dir / MODEL_FILE
                    if not path.is_file():
                        raise ModelLoadError(f"{path} is missing (needed for Grad-CAM)")
                    self._keras_model = load_keras_model(path)
        return self._keras_model

    def predict_raw(self, batch: np.ndarray) -> np.ndarray:
        """The model's own probabilities for a (N, H, W, C) float32 batch."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 4 or tuple(batch.shape[1:]) != tuple(self.input_shape):
            raise ValueError(
                f"expected a batch of shape (N, {', '.join(map(str, self.input_shape))}), "
                f"got {batch.shape}"
            )
        if self.backend != "keras":
            return np.asarray(self._session.run(None, {self._input_name: batch})[0])
        return np.asarray(self._keras_model(batch, training=False))

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (N, n_classes) for a batch of preprocessed images."""
        if len(batch) == 0:
            return np.zeros((0, len(self.class_names)), dtype=np.float64)
        return calibrate(self.predict_raw(batch), self.card.temperature)
