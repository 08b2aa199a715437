"""Step: score one trained backbone on the validation split (`evaluate_<backbone>`)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import keras
import numpy as np
import pandas as pd
from zenml import log_metadata, step

from braintumor.constants import VAL
from braintumor.evaluation.metrics import evaluate
from braintumor.training.config import TrainingConfig
from braintumor.training.dataset import label_indices, load_images, select_split
from braintumor.training.trainer import predict_proba
from braintumor_zenml.materializers import ImageFolder


def _latency_ms(model: keras.Model, image: np.ndarray, repeats: int = 20) -> float:
    """Median milliseconds for one image, model only (after a warm-up call)."""
    batch = image[None].astype(np.float32)
    model.predict_on_batch(batch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict_on_batch(batch)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def _size_mb(model: keras.Model) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        model.save(path)
        return path.stat().st_size / 1e6


@step(substitutions={"backbone": "backbone"})
def evaluate_backbone(
    model: keras.Model, images: ImageFolder, splits: pd.DataFrame, config: dict[str, Any]
) -> Annotated[dict, "val_metrics_{backbone}"]:
    """Validation metrics (weighted F1 with CI, per-class recall...), size and latency."""
    training = TrainingConfig(**config)
    rows = select_split(splits, VAL)
    x = load_images(rows["path"].tolist(), images.path, training.preprocess_spec())
    y = label_indices(rows["label"].tolist(), training.class_names)
    probs = predict_proba(model, x)
    metrics = evaluate(y, probs, training.class_names)
    metrics.update(
        backbone=training.backbone,
        split=VAL,
        latency_ms=round(_latency_ms(model, x[0]), 2),
        model_mb=round(_size_mb(model), 2),
    )
    log_metadata(
        metadata={
            "val_weighted_f1": metrics["weighted_f1"],
            "val_weighted_f1_ci": metrics["weighted_f1_ci"],
            "latency_ms": metrics["latency_ms"],
            "model_mb": metrics["model_mb"],
        }
    )
    return metrics
