"""Export a trained classifier for fast serving: ONNX (via Keras' own tf2onnx exporter).

The ONNX graph takes the same tensor as the Keras model (float32 (batch, size, size,
channels) in [0, 255], the backbone normalisation included) with a dynamic batch size, and
returns the softmax probabilities. `check_onnx_parity` compares both on given inputs.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from braintumor.models.precision import as_float32


class ExportError(RuntimeError):
    """A model that cannot be exported, or an export that disagrees with its model."""


def to_onnx(model: Any, path: str | Path, *, opset: int | None = None) -> Path:
    """Write `model` as an ONNX file at `path` (float32 weights; mixed precision is undone).

    Needs `tf2onnx` (the `export` extra). Returns the path.
    """
    import keras

    try:
        import tf2onnx  # noqa: F401
    except ImportError as exc:
        raise ExportError("ONNX export needs tf2onnx: pip install tf2onnx") from exc
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    model = as_float32(model)
    spec = keras.InputSpec(shape=(None, *model.input_shape[1:]), dtype="float32")
    # tf2onnx prints a lot; keep the caller's output readable.
    with contextlib.redirect_stdout(io.StringIO()):
        model.export(
            str(target), format="onnx", verbose=False, input_signature=[spec], opset_version=opset
        )
    if not target.is_file():
        raise ExportError(f"the ONNX exporter wrote nothing at {target}")
    return target


def onnx_session(path: str | Path, threads: int | None = None):
    """An ONNX Runtime CPU session (threads: intra-op threads, default all cores)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or (os.cpu_count() or 1)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_predict(session: Any, x: np.ndarray) -> np.ndarray:
    name = session.get_inputs()[0].name
    return session.run(None, {name: np.asarray(x, dtype=np.float32)})[0]


def check_onnx_parity(model: Any, path: str | Path, x: np.ndarray, atol: float = 1e-4) -> float:
    """Largest |Keras - ONNX| probability difference on `x`; raises ExportError above `atol`."""
    import keras

    expected = keras.ops.convert_to_numpy(model(np.asarray(x, np.float32), training=False))
    got = onnx_predict(onnx_session(path), x)
    worst = float(np.max(np.abs(expected.astype(np.float64) - got)))
    if worst > atol:
        raise ExportError(f"ONNX and Keras predictions differ by {worst:.2e} (> {atol:.0e})")
    return worst
