"""Decide whether a candidate pair (close perceptual hashes) is the same picture.

Perceptual hashes alone over-merge MRI: dark-background slices share low frequencies, and
adjacent slices of one scan hash alike. Each candidate pair is therefore compared on pixels:

1. Both images are cropped to the head (`head_box`: above the background level, after a
   morphological opening that removes frames, text and specks) and resized to
   `VERIFY_SIZE` x `VERIFY_SIZE`, so padding, framing, resolution and aspect ratio do not
   matter.
2. Coarse: at 32 x 32, the second image (as is, and mirrored) is aligned onto the first with
   an affine ECC registration (OpenCV). Orientations scoring below `min_correlation - 0.12`
   stop here (on the Kaggle set no pair verified at full size scored below 0.93 coarse).
3. Fine: the surviving orientations are registered again at full size, starting from the
   coarse warp; the score is the Pearson correlation of the overlapping pixels (or of the
   unaligned images, if higher).

Pearson correlation ignores brightness and contrast changes. A pair is the same picture when
its score is at least `DEFAULT_MIN_CORRELATION` (0.97). The threshold comes from the data: on
the 5,871 candidate pairs of distinct images in the Kaggle set (pHash distance <= 8), and on
the 56,006 within distance 12, no pair scores between 0.954 and 0.977; the threshold sits in
that gap. Pairs above it looked like the same picture by eye (re-encoded, re-framed, resized
or retouched copies), pairs below like adjacent slices or other scans (docs/integrity.md has
the by-eye false-merge check). On the Kaggle and figshare-br35h sets merged there is no such
gap (pairs score 0.96999 and 0.97001), so pairs near the threshold there are a judgement call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from braintumor.imaging import decode_image
from braintumor.integrity.workers import (
    DEFAULT_WORKERS,
    batches,
    map_path_batches,
    process_pool,
)

VERIFY_SIZE = 128
COARSE_SIZE = 32
DEFAULT_MIN_CORRELATION = 0.97
# Coarse scores this far below the threshold skip the full-size registration.
COARSE_MARGIN = 0.12

# Head crop: pixels brighter than the background by this much; opening kernel and border band
# as shares of the image side; components smaller than this share of the largest are ignored.
_HEAD_DELTA = 20
_MAX_BACKGROUND = 60.0
_OPEN_FRACTION = 0.02
_BORDER_FRACTION = 0.02
_MIN_COMPONENT = 0.1
_ANALYSIS_SIDE = 256

# ECC settings, and the largest warp accepted as "the same picture moved a bit": more than
# this is a registration that ran away on two different images.
# Iteration caps: same pictures converge in a few steps, different ones use up the cap, so
# the caps bound the cost (10/15 decide the 5,846 Kaggle candidates exactly as 50/50 do).
_COARSE_ITERATIONS = 10
_FINE_ITERATIONS = 15
_MAX_LINEAR_DEVIATION = 0.3  # |A - I| per entry of the 2x2 part
_MAX_SHIFT_FRACTION = 0.2  # translation as a share of the side
_MIN_OVERLAP = 0.5  # share of pixels that must stay inside both images after alignment
_IDENTITY = np.eye(2, 3, dtype=np.float32)  # read only: `_register` passes ECC a copy
# Pairs sent to a worker at a time (also the progress step).
_PAIR_BATCH = 250


class VerificationError(RuntimeError):
    """An image named by a candidate pair cannot be read for verification."""


def head_box(gray: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the head, robust to frames, text and background level."""
    height, width = gray.shape
    scale = min(1.0, _ANALYSIS_SIDE / max(height, width))
    small = gray
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    rows, cols = small.shape
    band = max(1, round(min(rows, cols) * _BORDER_FRACTION))
    border = np.concatenate(
        [
            small[:band].ravel(),
            small[-band:].ravel(),
            small[:, :band].ravel(),
            small[:, -band:].ravel(),
        ]
    )
    background = min(float(np.median(border)), _MAX_BACKGROUND)
    mask = (small > background + _HEAD_DELTA).astype(np.uint8)
    kernel = max(3, round(min(rows, cols) * _OPEN_FRACTION)) | 1
    opened = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((kernel, kernel), np.uint8))
    if opened.any():
        mask = opened
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:
        return 0, height, 0, width
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.flatnonzero(areas >= _MIN_COMPONENT * areas.max()) + 1
    left, top = stats[keep, cv2.CC_STAT_LEFT].min(), stats[keep, cv2.CC_STAT_TOP].min()
    right = (stats[keep, cv2.CC_STAT_LEFT] + stats[keep, cv2.CC_STAT_WIDTH]).max()
    bottom = (stats[keep, cv2.CC_STAT_TOP] + stats[keep, cv2.CC_STAT_HEIGHT]).max()
    return (
        int(np.floor(top / scale)),
        min(height, int(np.ceil(bottom / scale))),
        int(np.floor(left / scale)),
        min(width, int(np.ceil(right / scale))),
    )


def verification_image(gray: np.ndarray, size: int = VERIFY_SIZE) -> np.ndarray:
    """Crop to the head and resize to size x size (uint8), the unit verification compares."""
    gray = np.ascontiguousarray(gray, dtype=np.uint8)
    top, bottom, left, right = head_box(gray)
    head = gray[top:bottom, left:right]
    interpolation = cv2.INTER_AREA if min(head.shape) >= size else cv2.INTER_LINEAR
    return cv2.resize(head, (size, size), interpolation=interpolation)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64).ravel()  # copies, so the in-place centring below is safe
    b = b.astype(np.float64).ravel()
    a -= a.sum() / a.size  # what a.mean() computes, with less overhead (called per pair)
    b -= b.sum() / b.size
    denominator = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0


def _register(
    a: np.ndarray, b: np.ndarray, warp: np.ndarray, iterations: int
) -> tuple[float, np.ndarray]:
    """(score, warp) of `b` aligned onto `a` by ECC starting from `warp`."""
    unaligned = pearson(a, b)
    size = a.shape[0]
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, iterations, 1e-4)
    gauss = 3 if size <= COARSE_SIZE else 5
    try:
        _, found = cv2.findTransformECC(a, b, warp.copy(), cv2.MOTION_AFFINE, criteria, None, gauss)
    except cv2.error:  # did not converge: the images do not align
        return unaligned, warp
    linear, shift = found[:, :2] - _IDENTITY[:, :2], found[:, 2]
    if (
        np.abs(linear).max() > _MAX_LINEAR_DEVIATION
        or np.abs(shift).max() > _MAX_SHIFT_FRACTION * size
    ):
        return unaligned, warp
    flags = cv2.INTER_LINEAR + cv2.WARP_INVERSE_MAP
    moved = cv2.warpAffine(b, found, (size, size), flags=flags)
    inside = cv2.warpAffine(np.ones_like(b), found, (size, size), flags=flags) > 0.999
    if np.count_nonzero(inside) < _MIN_OVERLAP * inside.size:
        return unaligned, warp
    return max(unaligned, pearson(a[inside], moved[inside])), found


def pair_score(
    a: np.ndarray, b: np.ndarray, min_correlation: float = DEFAULT_MIN_CORRELATION
) -> tuple[float, bool]:
    """(score, mirrored) of two verification images; mirrored: `b` was flipped to match.

    Scores below `min_correlation - COARSE_MARGIN` come from the 32 x 32 stage only.
    """
    a, b = a.astype(np.float32), b.astype(np.float32)
    flipped = np.ascontiguousarray(b[:, ::-1])
    small = (COARSE_SIZE, COARSE_SIZE)
    a_small = cv2.resize(a, small, interpolation=cv2.INTER_AREA)
    coarse = []
    for mirrored, other in ((False, b), (True, flipped)):
        other_small = cv2.resize(other, small, interpolation=cv2.INTER_AREA)
        score, warp = _register(a_small, other_small, _IDENTITY, _COARSE_ITERATIONS)
        coarse.append((score, mirrored, other, warp))
    coarse.sort(key=lambda item: -item[0])
    best = (coarse[0][0], coarse[0][1])
    gate = min_correlation - COARSE_MARGIN
    fine_best: tuple[float, bool] | None = None
    for score, mirrored, other, warp in coarse:
        if score < gate:
            continue
        warp = warp.copy()
        warp[:, 2] *= VERIFY_SIZE / COARSE_SIZE
        fine, _ = _register(a, other, warp, _FINE_ITERATIONS)
        if fine_best is None or fine > fine_best[0]:
            fine_best = (fine, mirrored)
        if fine >= min_correlation:
            break
    return fine_best if fine_best is not None else best


def load_gray(path: Path) -> np.ndarray:
    try:
        return decode_image(Path(path).read_bytes()).pixels
    except FileNotFoundError:
        raise VerificationError(
            f"{path} is listed in the manifest but missing on disk: re-run ingestion "
            "or `dvc pull` so the data root matches its manifest"
        ) from None
    except ValueError as exc:
        raise VerificationError(f"cannot decode {path} for verification ({exc})") from None


def _score_pairs(
    images: np.ndarray, first: np.ndarray, second: np.ndarray, min_correlation: float
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, mirrored) of the pairs `images[first[k]]`, `images[second[k]]`."""
    scores = np.zeros(len(first), dtype=np.float64)
    mirrored = np.zeros(len(first), dtype=bool)
    for k, (i, j) in enumerate(zip(first.tolist(), second.tolist(), strict=True)):
        scores[k], mirrored[k] = pair_score(images[i], images[j], min_correlation)
    return scores, mirrored


# In a worker process: the verification images of the run (sent once, at its start).
_worker_images: np.ndarray | None = None


def _keep_images(images: np.ndarray) -> None:
    global _worker_images
    _worker_images = images


def _load_images(
    data_root: Path, paths: list[str], loader: Callable[[Path], np.ndarray]
) -> list[np.ndarray]:
    return [verification_image(loader(Path(data_root) / path)) for path in paths]


def _score_in_worker(
    first: np.ndarray, second: np.ndarray, min_correlation: float
) -> tuple[np.ndarray, np.ndarray]:
    return _score_pairs(_worker_images, first, second, min_correlation)


def verify_pairs(
    data_root: Path,
    paths: Sequence[str],
    first: np.ndarray,
    second: np.ndarray,
    min_correlation: float = DEFAULT_MIN_CORRELATION,
    loader: Callable[[Path], np.ndarray] = load_gray,
    workers: int = DEFAULT_WORKERS,
    progress: Callable[[int, int], None] | None = None,
    images: np.ndarray | None = None,
) -> pd.DataFrame:
    """Score candidate pairs of images on disk.

    Each image is read and cropped once (`verification_image`), unless `images` holds them
    already, then the pairs are scored with `pair_score`; both in `workers` processes
    (default: one per core) when workers > 1.

    Args:
        data_root: folder the manifest paths are relative to.
        paths: the manifest's `path` column; `first[k]`, `second[k]` index into it.
        first, second: the candidate pairs.
        min_correlation: score from which a pair is the same picture.
        loader: reads one image as grayscale uint8 (a module-level function: with workers
            > 1 it runs in the worker processes).
        workers: processes; 1 scores in this process.
        progress: called with (pairs done, pairs in all) after each batch of pairs.
        images: the verification images of all `paths` (`integrity.images.read_images`);
            None reads the images in candidate pairs.

    Returns:
        One row per pair: `i, j, score, mirrored, same` (same: score >= min_correlation).
    """
    first, second = np.asarray(first, dtype=np.int64), np.asarray(second, dtype=np.int64)
    if first.shape != second.shape:
        raise ValueError("first and second must hold one index per candidate pair")
    needed = np.unique(np.concatenate([first, second]))
    # Pairs as rows of the stack of the needed images.
    a, b = np.searchsorted(needed, first), np.searchsorted(needed, second)
    needed_paths = [paths[k] for k in needed.tolist()]
    if images is not None and len(images) != len(paths):
        raise ValueError("images must hold one verification image per path")
    if images is not None:
        stack = np.asarray(images)[needed]
    else:
        loaded = map_path_batches(_load_images, data_root, needed_paths, loader, workers)
        crops = [image for part in loaded for image in part]
        stack = np.stack(crops) if crops else None
    scores = np.zeros(len(first), dtype=np.float64)
    mirrored = np.zeros(len(first), dtype=bool)
    pair_batches = batches(len(first), _PAIR_BATCH, workers)
    done = 0

    def record(batch: np.ndarray, result: tuple[np.ndarray, np.ndarray]) -> None:
        nonlocal done
        scores[batch], mirrored[batch] = result
        done += len(batch)
        if progress is not None:
            progress(done, len(first))

    if workers <= 1 or len(first) == 0:
        opencv_threads = cv2.getNumThreads()
        cv2.setNumThreads(1)  # small images: OpenCV's own threads cost more than they save
        try:
            for batch in pair_batches:
                record(batch, _score_pairs(stack, a[batch], b[batch], min_correlation))
        finally:
            cv2.setNumThreads(opencv_threads)
    else:
        with process_pool(workers, _keep_images, (stack,)) as pool:
            results = pool.map(
                _score_in_worker,
                [a[batch] for batch in pair_batches],
                [b[batch] for batch in pair_batches],
                [min_correlation] * len(pair_batches),
            )
            for batch, result in zip(pair_batches, results, strict=True):
                record(batch, result)
    return pd.DataFrame(
        {
            "i": first,
            "j": second,
            "score": scores,
            "mirrored": mirrored,
            "same": scores >= min_correlation,
        }
    )
