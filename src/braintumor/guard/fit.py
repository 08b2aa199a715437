"""Fit a model's guard: the OOD detector on the training split, its threshold and the
conformal sets on the validation split, and what they flag there.

Called by the pipeline's `fit_guard` step and by `benchmarks/abstention.py`; it takes the
serving graph's outputs (`models.export.SERVING_OUTPUTS`) as arrays, so it works the same on
Keras and ONNX outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from braintumor.guard.conformal import fit_thresholds, prediction_sets
from braintumor.guard.ood import DetectorKind, OodDetector, fit_detector
from braintumor.guard.review import (
    OUT_OF_DISTRIBUTION,
    GuardCard,
    flag_rates,
    flag_reasons,
)

if TYPE_CHECKING:
    import pandas as pd

    from braintumor.preprocessing import PreprocessSpec


@dataclass(frozen=True)
class GuardSettings:
    detector: DetectorKind = "mahalanobis"
    knn_k: int = 10
    false_review_rate: float = 0.05
    conformal_error_rate: float = 0.05


def fit_guard(
    train_embedding: np.ndarray,
    train_labels: np.ndarray,
    val_embedding: np.ndarray,
    val_probs: np.ndarray,
    val_labels: np.ndarray,
    val_input_failed: np.ndarray,
    class_names: tuple[str, ...],
    review_threshold: float,
    settings: GuardSettings | None = None,
) -> tuple[GuardCard, OodDetector]:
    """The guard of one model.

    Args:
        train_embedding, train_labels: the training split's embeddings and class indices.
        val_embedding, val_probs, val_labels: the validation split's embeddings, served
            (calibrated) probabilities and class indices.
        val_input_failed: per validation image, whether an input check failed.
        review_threshold: the low-confidence threshold the validation rates are measured at.
    """
    settings = settings or GuardSettings()
    if not 0.0 < settings.false_review_rate < 1.0:
        raise ValueError(f"false_review_rate must be in (0, 1), not {settings.false_review_rate}")
    detector = fit_detector(settings.detector, train_embedding, train_labels, k=settings.knn_k)
    val_scores = detector.score(val_embedding)
    # Flag the top false_review_rate of validation images (the "higher" quantile keeps the
    # measured rate at or below the target).
    threshold = float(np.quantile(val_scores, 1.0 - settings.false_review_rate, method="higher"))
    thresholds = fit_thresholds(val_probs, val_labels, settings.conformal_error_rate)
    sets = prediction_sets(val_probs, thresholds)
    flags = flag_reasons(
        val_probs.max(axis=1), sets.sum(axis=1), val_scores, val_input_failed,
        review_threshold, threshold,
    )  # fmt: skip
    labels = np.asarray(val_labels)
    coverage = {
        name: round(float(sets[labels == c, c].mean()), 4)
        for c, name in enumerate(class_names)
        if (labels == c).any()
    }
    card = GuardCard(
        detector=settings.detector,
        ood_threshold=threshold,
        false_review_rate=settings.false_review_rate,
        conformal_error_rate=settings.conformal_error_rate,
        conformal_thresholds=tuple(float(t) for t in thresholds),
        knn_k=settings.knn_k if settings.detector == "knn" else None,
        review_threshold=review_threshold,
        validation_images=len(labels),
        validation_rates=flag_rates(flags),
        validation_set_coverage=coverage,
    )
    return card, detector


@dataclass(frozen=True)
class FittedGuard:
    card: GuardCard
    detector: OodDetector
    # The validation images' features with the model's answers (the drift reference).
    answer_reference: pd.DataFrame


def input_check_failures(paths: list[Path]) -> np.ndarray:
    """Per image file, whether any input check fails (as the service would decide)."""
    from braintumor.guard.input_checks import failed_checks
    from braintumor.imaging import decode_image

    failed = []
    for path in paths:
        decoded = decode_image(Path(path).read_bytes(), measure_colour=True)
        failed.append(bool(failed_checks(decoded.pixels, decoded.colourfulness)))
    return np.array(failed, dtype=bool)


def fit_model_guard(
    model: Any,
    data_root: str | Path,
    splits: pd.DataFrame,
    spec: PreprocessSpec,
    temperature: float,
    class_names: tuple[str, ...],
    review_threshold: float,
    settings: GuardSettings | None = None,
) -> FittedGuard:
    """The guard of a trained Keras classifier on a leakage-free split (train + val rows).

    The model's outputs are the serving graph's (`models.export.serving_outputs`, with the
    temperature the card will carry); the test split is never read.
    """
    import pandas as pd

    from braintumor.constants import TRAIN, VAL
    from braintumor.models.export import serving_outputs
    from braintumor.monitoring.features import (
        CONFIDENCE,
        IMAGE_COLUMN,
        OOD_SCORE,
        PREDICTED_LABEL,
        manifest_feature_table,
    )
    from braintumor.training.dataset import label_indices, load_images, select_split

    settings = settings or GuardSettings()
    outputs = {}
    rows = {}
    for split in (TRAIN, VAL):
        rows[split] = select_split(splits, split)
        if rows[split].empty:
            raise ValueError(f"the {split} split is empty: the guard cannot be fitted")
        x = load_images(rows[split]["path"].tolist(), data_root, spec)
        outputs[split] = serving_outputs(model, x, temperature)
    val_paths = [Path(data_root) / p for p in rows[VAL]["path"]]
    y_val = label_indices(rows[VAL]["label"].tolist(), class_names)
    card, detector = fit_guard(
        outputs[TRAIN]["embedding"],
        label_indices(rows[TRAIN]["label"].tolist(), class_names),
        outputs[VAL]["embedding"],
        outputs[VAL]["probabilities"],
        y_val,
        input_check_failures(val_paths),
        class_names,
        review_threshold,
        settings,
    )
    probs = outputs[VAL]["probabilities"]
    scores = detector.score(outputs[VAL]["embedding"])
    answers = {
        IMAGE_COLUMN: rows[VAL]["path"].astype(str).to_numpy(),
        PREDICTED_LABEL: np.asarray(class_names)[probs.argmax(axis=1)],
        CONFIDENCE: probs.max(axis=1),
        OOD_SCORE: scores,
        OUT_OF_DISTRIBUTION: (scores > card.ood_threshold).astype(float),
    }
    features = manifest_feature_table(data_root, splits, split=VAL)
    reference = features.merge(pd.DataFrame(answers), on=IMAGE_COLUMN, how="inner")
    return FittedGuard(card, detector, reference)
