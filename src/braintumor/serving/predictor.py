"""The model behind the service: load a packaged model's ONNX serving graph, run it on
preprocessed batches, and the pure rules that turn probabilities into an answer.

Serving runs ONNX Runtime only (no TensorFlow, no Keras): the fastest graph the model-store
entry holds is used, `model.int8.onnx` (quantized, shipped only when it answered like Keras,
see `optimize`), else `model.onnx`. Both are serving graphs (`models.export.serving_model`):
one run gives the calibrated probabilities, the logits and the embedding, and the float graph
also gives Grad-CAM's feature map and channel weights (`explain`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from braintumor.serving.metadata import ModelCard

MODEL_FILE = "model.keras"
ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
CARD_FILE = "card.json"
OOD_FILE = "ood.npz"

Backend = Literal["auto", "onnx-int8", "onnx"]
BACKENDS: tuple[str, ...] = ("auto", "onnx-int8", "onnx")
FILES: dict[str, str] = {"onnx-int8": INT8_FILE, "onnx": ONNX_FILE}

# Output names of the serving graph (`braintumor.models.export`, which serving never imports).
PROBABILITIES, LOGITS, EMBEDDING = "probabilities", "logits", "embedding"
ACTIVATION, CAM_WEIGHTS = "activation", "cam_weights"
ANSWER_OUTPUTS = (PROBABILITIES, LOGITS, EMBEDDING)
EXPLAIN_OUTPUTS = (PROBABILITIES, ACTIVATION, CAM_WEIGHTS)


class ModelLoadError(RuntimeError):
    """A packaged model that cannot be served (missing file, wrong shape, bad output)."""


@dataclass(frozen=True)
class ModelOutputs:
    """One batch through the serving graph."""

    probabilities: np.ndarray  # (N, classes), calibrated
    logits: np.ndarray  # (N, classes)
    embedding: np.ndarray  # (N, features)


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
    raise ModelLoadError(
        f"{model_dir} holds no ONNX serving graph ({', '.join(FILES.values())}): package the "
        "model with `braintumor package`"
    )


def onnx_session(path: str | Path, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session, sequential, `threads` intra-op threads (None: all cores)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    # Without the arena, memory goes back after each run: a batch of 32 otherwise leaves
    # ~180 MB reserved per session for good (measured), at no visible cost in speed.
    options.enable_cpu_mem_arena = False
    if threads:
        options.intra_op_num_threads = int(threads)
    # Idle pool threads sleep instead of spinning: with several workers or API threads each
    # running a session on few cores, spinning threads steal the cores the others need.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class Predictor:
    """The serving graph of a packaged model, run with ONNX Runtime.

    Args:
        model_dir: A model-store entry's folder (`model.onnx`, optional `model.int8.onnx`).
        card: The model card; read from `model_dir/card.json` when omitted.
        backend: `auto` (int8 when packaged), `onnx-int8` or `onnx`.
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
        self._threads = threads
        self._session, self._input_name = self._load(FILES[self.backend], ANSWER_OUTPUTS)
        self._explainer: tuple[Any, str] | None = None
        self._explainer_lock = threading.Lock()
        self._check_output()

    def _load(self, file: str, needed: tuple[str, ...]) -> tuple[Any, str]:
        path = self.model_dir / file
        if not path.is_file():
            raise ModelLoadError(f"{path} is missing")
        session = onnx_session(path, self._threads)
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise ModelLoadError(f"{file} must take one input, it takes {len(inputs)}")
        missing = set(needed) - {output.name for output in session.get_outputs()}
        if missing:
            raise ModelLoadError(
                f"{file} is not a serving graph (no output {sorted(missing)}): it was packaged "
                "by an older version; package the model again with `braintumor package`"
            )
        return session, inputs[0].name

    def _check_output(self) -> None:
        """Run a blank image once: warms the model up and checks its output contract."""
        probs = self.infer(np.zeros((1, *self.input_shape), dtype=np.float32)).probabilities
        if probs.shape != (1, len(self.class_names)):
            raise ModelLoadError(
                f"the model outputs shape {probs.shape[1:]} but the card names "
                f"{len(self.class_names)} classes"
            )
        if not np.isclose(float(probs.sum()), 1.0, atol=1e-3) or float(probs.min()) < 0:
            raise ModelLoadError("the model must end with a softmax (rows summing to 1)")

    def _checked(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 4 or tuple(batch.shape[1:]) != tuple(self.input_shape):
            raise ValueError(
                f"expected a batch of shape (N, {', '.join(map(str, self.input_shape))}), "
                f"got {batch.shape}"
            )
        return batch

    def infer(self, batch: np.ndarray) -> ModelOutputs:
        """Calibrated probabilities, logits and embeddings of a (N, H, W, C) float32 batch."""
        if len(batch) == 0:
            empty = np.zeros((0, len(self.class_names)), dtype=np.float32)
            return ModelOutputs(empty, empty, np.zeros((0, 0), dtype=np.float32))
        feed = {self._input_name: self._checked(batch)}
        probs, logits, embedding = self._session.run(list(ANSWER_OUTPUTS), feed)
        return ModelOutputs(np.asarray(probs, np.float64), np.asarray(logits), embedding)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (N, n_classes) for a batch of preprocessed images."""
        return self.infer(batch).probabilities

    def explain(self, tensor: np.ndarray, class_index: int) -> np.ndarray:
        """Grad-CAM heat map (H, W) in [0, 1] of one preprocessed image for `class_index`,
        from the float serving graph (also when int8 serves the answers)."""
        from braintumor.evaluation.gradcam import heatmap_from

        if not 0 <= class_index < len(self.class_names):
            raise ValueError(f"class_index {class_index} outside 0..{len(self.class_names) - 1}")
        if self._explainer is None:
            with self._explainer_lock:
                if self._explainer is None:
                    self._explainer = self._load(ONNX_FILE, EXPLAIN_OUTPUTS)
        session, name = self._explainer
        batch = self._checked(np.asarray(tensor)[None])
        _, activation, weights = session.run(list(EXPLAIN_OUTPUTS), {name: batch})
        return heatmap_from(activation[0], weights[0, class_index], self.input_shape[:2])
