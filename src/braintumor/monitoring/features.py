"""Per-image features for drift detection: Evidently compares tables, not pixels.

Each image becomes one row of cheap, interpretable numbers that move when the acquisition
changes: its original geometry (a new scanner or export tool changes the resolution), its
intensity distribution (another contrast or windowing), how much of the frame the head fills,
sharpness (resampling, motion, compression) and entropy. With a model's output, the predicted
class and the top probability (confidence) join the row: a falling confidence is the earliest
warning that accuracy is about to drop.

Intensity, sharpness and entropy are measured on the slice as the model sees it (the shared
`preprocess_gray`, raw variant, at `ANALYSIS_SIZE`), so they do not depend on the original
resolution; geometry comes from the decoded original.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from braintumor.constants import CLASS_NAMES
from braintumor.imaging import DEFAULT_MAX_PIXELS, ImageDecodeError, decode_image
from braintumor.preprocessing import HEAD_THRESHOLD, PreprocessSpec, preprocess_gray

if TYPE_CHECKING:  # imported where tables are built: the service's path needs no pandas
    import pandas as pd

# The grid the intensity and texture features are measured on (raw pixels, padded to a square).
ANALYSIS_SIZE = 256
ANALYSIS_SPEC = PreprocessSpec(image_size=ANALYSIS_SIZE, channels=1, variant="raw")

IMAGE_COLUMN = "image"  # identifies the row (a path, or "array[i]"); never a drift feature
PERCENTILES: tuple[int, ...] = (5, 25, 50, 75, 95)
IMAGE_FEATURES: tuple[str, ...] = (
    "width",
    "height",
    "aspect_ratio",
    "intensity_mean",
    "intensity_std",
    *(f"intensity_p{q:02d}" for q in PERCENTILES),
    "head_fraction",
    "head_box_fraction",
    "head_intensity_mean",
    "sharpness",
    "entropy",
)
PREDICTED_LABEL = "predicted_label"
CONFIDENCE = "confidence"
# The guard's view of each answer (`braintumor.guard`): its OOD score, and 1.0 when the
# answer was flagged out of distribution (the column's mean is the share of OOD answers).
OOD_SCORE = "ood_score"
OUT_OF_DISTRIBUTION = "out_of_distribution"
ANSWER_FEATURES: tuple[str, ...] = (OOD_SCORE, OUT_OF_DISTRIBUTION)
PREDICTION_FEATURES: tuple[str, ...] = (PREDICTED_LABEL, CONFIDENCE, *ANSWER_FEATURES)
FEATURE_COLUMNS: tuple[str, ...] = IMAGE_FEATURES + PREDICTION_FEATURES
CATEGORICAL_FEATURES: frozenset[str] = frozenset({PREDICTED_LABEL})

# Files that are never images, skipped without trying to decode them.
NOT_IMAGE_SUFFIXES = frozenset(
    {".csv", ".json", ".jsonl", ".txt", ".md", ".yaml", ".yml", ".html", ".dvc", ".log", ".gz"}
)
SYSTEM_NAMES = frozenset(
    {"__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini", ".ipynb_checkpoints"}
)

ImageInput = str | os.PathLike[str] | np.ndarray


@dataclass(frozen=True)
class SkippedImage:
    """An input that could not be turned into features, and why (see `imaging` reasons)."""

    image: str
    reason: str
    detail: str


def image_features(gray: np.ndarray) -> dict[str, float]:
    """Features of one decoded grayscale slice (H, W) uint8, as plain floats.

    Percentiles are exact for 8-bit images (read off the histogram: the smallest value whose
    cumulative share reaches q). Sharpness is the variance of the Laplacian; entropy is the
    Shannon entropy of the 256-bin histogram in bits (0 for a flat image, 8 at most).
    """
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError(f"expected a (H, W) uint8 grayscale image, got {gray.shape} {gray.dtype}")
    height, width = gray.shape
    if height == 0 or width == 0:
        raise ValueError(f"the image is empty ({width}x{height} pixels)")
    view = preprocess_gray(gray, ANALYSIS_SPEC)
    counts = np.bincount(view.ravel(), minlength=256).astype(np.float64)
    total = counts.sum()
    levels = np.arange(256, dtype=np.float64)
    share = counts / total
    mean = float(share @ levels)
    std = math.sqrt(max(float(share @ (levels - mean) ** 2), 0.0))
    cumulative = np.cumsum(share)
    percentiles = {
        f"intensity_p{q:02d}": float(np.searchsorted(cumulative, q / 100 - 1e-12))
        for q in PERCENTILES
    }
    head = share[HEAD_THRESHOLD + 1 :]
    head_fraction = float(head.sum())
    head_mean = float(head @ levels[HEAD_THRESHOLD + 1 :] / head_fraction) if head_fraction else 0.0
    nonzero = share[share > 0]
    entropy = float(-(nonzero * np.log2(nonzero)).sum()) + 0.0
    sharpness = float(cv2.Laplacian(view, cv2.CV_64F).var())
    return {
        "width": float(width),
        "height": float(height),
        "aspect_ratio": width / height,
        "intensity_mean": mean,
        "intensity_std": std,
        **percentiles,
        "head_fraction": head_fraction,
        "head_box_fraction": _head_box_fraction(view),
        "head_intensity_mean": head_mean,
        "sharpness": sharpness,
        "entropy": entropy,
    }


def _head_box_fraction(view: np.ndarray) -> float:
    """Share of the frame covered by the bounding box of the head (0 when there is none)."""
    mask = view > HEAD_THRESHOLD
    rows, cols = mask.any(axis=1), mask.any(axis=0)
    if not rows.any():
        return 0.0
    row_idx, col_idx = np.flatnonzero(rows), np.flatnonzero(cols)
    box = (row_idx[-1] - row_idx[0] + 1) * (col_idx[-1] - col_idx[0] + 1)
    return float(box) / view.size


def prediction_features(
    probabilities: Sequence[float] | np.ndarray | Mapping[str, float],
    class_names: Sequence[str] = CLASS_NAMES,
) -> dict[str, float | str]:
    """The predicted class and the top probability (confidence) of one prediction."""
    if isinstance(probabilities, Mapping):
        class_names = list(probabilities)
        values = np.asarray([probabilities[name] for name in class_names], dtype=np.float64)
    else:
        values = np.asarray(probabilities, dtype=np.float64).ravel()
    if values.size != len(class_names):
        raise ValueError(
            f"{values.size} probabilities for {len(class_names)} classes {list(class_names)}"
        )
    if not np.all(np.isfinite(values)):
        raise ValueError(f"probabilities must be finite, got {values.tolist()}")
    best = int(np.argmax(values))
    return {PREDICTED_LABEL: str(class_names[best]), CONFIDENCE: float(values[best])}


def answer_columns(answer: Any) -> dict[str, float]:
    """The guard's monitored columns of one service answer (a `schemas.Prediction`)."""
    columns = {OUT_OF_DISTRIBUTION: float("out_of_distribution" in answer.review_reasons)}
    if answer.ood_score is not None:
        columns[OOD_SCORE] = float(answer.ood_score)
    return columns


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Candidate image files under `folder` (recursive, sorted), skipping hidden and system
    files and files that are never images (csv, json, logs). Decoding decides the rest."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder of images")
    found = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part in SYSTEM_NAMES or part.startswith(".") for part in relative.parts):
            continue
        if path.is_file() and path.suffix.lower() not in NOT_IMAGE_SUFFIXES:
            found.append(path)
    return found


def feature_table(
    images: Sequence[ImageInput],
    predictions: np.ndarray | Sequence[Sequence[float]] | None = None,
    *,
    class_names: Sequence[str] = CLASS_NAMES,
    skipped: list[SkippedImage] | None = None,
    workers: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> pd.DataFrame:
    """One row of features per image (file paths or decoded (H, W) uint8 arrays).

    Args:
        images: paths of image files (any format `imaging.decode_image` reads) or arrays.
        predictions: optional (n_images, n_classes) probabilities, aligned with `images`;
            adds `predicted_label` and `confidence`.
        class_names: the order of the probability columns.
        skipped: when given, images that cannot be decoded are left out and described here;
            when None, the first one raises `ImageDecodeError` naming the file.
        workers: decoding threads (OpenCV and Pillow release the GIL); default: up to 4.
        max_pixels: refuse larger images (decompression bombs), as ingestion does.

    Returns:
        A DataFrame with the `image` column and `IMAGE_FEATURES` (+ `PREDICTION_FEATURES`),
        in the order of `images` (skipped ones removed).
    """
    import pandas as pd

    items = list(images)
    if predictions is not None:
        probs = np.asarray(predictions, dtype=np.float64)
        if probs.ndim != 2 or probs.shape[0] != len(items):
            raise ValueError(
                f"predictions must be (n_images, n_classes) = ({len(items)}, {len(class_names)}),"
                f" got {probs.shape}"
            )

    def one(index: int) -> dict[str, float | str] | SkippedImage:
        item = items[index]
        if isinstance(item, np.ndarray):
            name, gray = f"array[{index}]", item
        else:
            name = str(item)
            try:
                gray = decode_image(Path(item).read_bytes(), max_pixels=max_pixels).pixels
            except ImageDecodeError as exc:
                if skipped is None:
                    raise ImageDecodeError(exc.reason, f"{name}: {exc.detail}") from None
                return SkippedImage(name, exc.reason, exc.detail)
        row: dict[str, float | str] = {IMAGE_COLUMN: name, **image_features(gray)}
        if predictions is not None:
            row.update(prediction_features(probs[index], class_names))
        return row

    workers = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(one, range(len(items))))
    rows = [r for r in results if not isinstance(r, SkippedImage)]
    if skipped is not None:
        skipped.extend(r for r in results if isinstance(r, SkippedImage))
    columns = [IMAGE_COLUMN, *IMAGE_FEATURES]
    if predictions is not None:
        columns += list(PREDICTION_FEATURES)
    return pd.DataFrame(rows, columns=columns)


def split_constant_columns(
    frame: pd.DataFrame, *others: pd.DataFrame, columns: Sequence[str] | None = None
) -> tuple[list[str], list[str]]:
    """Split `columns` (default: all of `frame`'s) into (informative, constant).

    A column is constant when it holds a single value across `frame` and `others` together:
    it carries no drift signal, and Evidently's statistics divide by its zero spread. A column
    constant in the reference but different in the current data is kept (that is drift).
    """
    import pandas as pd

    names = list(frame.columns if columns is None else columns)
    keep, constant = [], []
    for name in names:
        values = pd.concat([f[name] for f in (frame, *others) if name in f.columns])
        (keep if values.nunique(dropna=True) > 1 else constant).append(name)
    return keep, constant


def manifest_feature_table(
    root: str | os.PathLike[str],
    frame: pd.DataFrame,
    *,
    split: str | None = None,
    skipped: list[SkippedImage] | None = None,
    workers: int | None = None,
) -> pd.DataFrame:
    """Features of the images a manifest or splits table lists (paths relative to `root`).

    Rows are filtered to `split` (column `split`) when given, and to `status == "kept"` when
    the table has a `status` column (the leakage-free splits table). The `image` column holds
    the relative path.
    """
    rows = frame
    if split is not None:
        if "split" not in rows.columns:
            raise ValueError("the table has no `split` column to filter on")
        rows = rows[rows["split"] == split]
    if "status" in rows.columns:
        rows = rows[rows["status"] == "kept"]
    if rows.empty:
        raise ValueError(f"no images listed for split {split!r}" if split else "no images listed")
    relative = [str(p) for p in rows["path"]]
    table = feature_table([Path(root) / p for p in relative], skipped=skipped, workers=workers)
    prefix = f"{Path(root)}/"
    table[IMAGE_COLUMN] = table[IMAGE_COLUMN].str.removeprefix(prefix)
    return table
