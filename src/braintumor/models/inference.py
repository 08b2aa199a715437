"""Running a trained Keras classifier: its probabilities, its latency and its saved size."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def predict_proba(model: Any, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Softmax probabilities for uint8/float images (n, size, size, channels), as float64."""
    import keras

    out = []
    for start in range(0, len(x), batch_size):
        batch = np.asarray(x[start : start + batch_size], dtype=np.float32)
        out.append(keras.ops.convert_to_numpy(model(batch, training=False)))
    if not out:
        return np.zeros((0, model.output_shape[-1]))
    return np.concatenate(out).astype(np.float64)


def latency_ms(model: Any, image: np.ndarray, repeats: int = 20) -> float:
    """Median milliseconds for one image, model only (after a warm-up call)."""
    batch = np.asarray(image)[None].astype(np.float32)
    model.predict_on_batch(batch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict_on_batch(batch)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def saved_size_mb(model: Any) -> float:
    """Megabytes of the model saved as a `.keras` file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        model.save(path)
        return path.stat().st_size / 1e6
