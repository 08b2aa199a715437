"""Worker processes for the per-image and per-pair work of the audit.

Decoding, head crops, ECC registration and the appearance features are many small NumPy and
OpenCV calls: threads hold the GIL between them (2 threads ran the verification only 1.3x
faster than one), processes do not (1.95x). Workers are spawned, not forked: a forked
child inherits the locks its parent's threads held (OpenCV's thread pool, a progress
display), and the audit's workers hung that way inside pytest. As with any spawned
multiprocessing, a script that runs the audit needs an `if __name__ == "__main__":` guard.
Each worker runs OpenCV single-threaded, since the images are small and the parallelism is
over items. Functions and arguments sent to workers are pickled (module-level functions).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np

T = TypeVar("T")

# Images sent to a worker at a time.
IMAGE_BATCH = 100
# One process per core this process may run on.
DEFAULT_WORKERS = (
    len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
)


def _single_threaded_opencv(initializer: Callable[..., None] | None, *initargs: object) -> None:
    cv2.setNumThreads(1)
    if initializer is not None:
        initializer(*initargs)


def process_pool(
    workers: int, initializer: Callable[..., None] | None = None, initargs: tuple = ()
) -> ProcessPoolExecutor:
    """A pool of `workers` spawned processes, OpenCV single-threaded, then `initializer`."""
    return ProcessPoolExecutor(
        max_workers=max(1, workers),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_single_threaded_opencv,
        initargs=(initializer, *initargs),
    )


def batches(count: int, size: int, workers: int) -> Sequence[np.ndarray]:
    """Indices 0..count-1 cut into batches of about `size` (at least 4 per worker, to balance)."""
    parts = max(1, min(count, max(count // max(size, 1), 4 * max(1, workers))))
    return np.array_split(np.arange(count), parts) if count else []


def map_path_batches(
    function: Callable[[Path, list[str], Callable[[Path], np.ndarray]], T],
    data_root: Path,
    paths: Sequence[str],
    loader: Callable[[Path], np.ndarray],
    workers: int,
) -> list[T]:
    """`function(data_root, batch, loader)` for `paths` cut into batches of about
    `IMAGE_BATCH`, in `workers` processes (in this one when workers <= 1 or there is one
    batch; otherwise `function` and `loader` must be module-level functions). One result per
    batch, in the order of `paths`."""
    paths = list(paths)
    parts = [
        [paths[k] for k in rows.tolist()] for rows in batches(len(paths), IMAGE_BATCH, workers)
    ]
    if workers <= 1 or len(parts) <= 1:
        return [function(data_root, part, loader) for part in parts]
    with process_pool(workers) as pool:
        return list(pool.map(function, [data_root] * len(parts), parts, [loader] * len(parts)))
