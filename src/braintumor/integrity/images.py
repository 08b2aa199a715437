"""Each image of an audit read once: its verification copy and its appearance features.

Pair verification compares 128 x 128 head crops (`verify.verification_image`) and the
appearance check measures every image (`appearance.appearance_features`); both start from
the decoded pixels, and decoding is the larger part of either. `read_images` decodes each
image once and computes both, in worker processes (`integrity.workers`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from braintumor.integrity.appearance import APPEARANCE_FEATURES, appearance_features
from braintumor.integrity.verify import VERIFY_SIZE, load_gray, verification_image
from braintumor.integrity.workers import DEFAULT_WORKERS, map_path_batches


@dataclass(frozen=True)
class AuditImages:
    """What the audit needs from the pixels, one row per path (in the order given).

    Attributes:
        verification: (n, VERIFY_SIZE, VERIFY_SIZE) uint8 head crops, for `verify_pairs`.
        appearance: `APPEARANCE_FEATURES` of each image, for `audit_appearance`.
    """

    verification: np.ndarray
    appearance: pd.DataFrame


def _read(
    data_root: Path, paths: list[str], loader: Callable[[Path], np.ndarray]
) -> tuple[list[np.ndarray], list[dict[str, float]]]:
    images, features = [], []
    for path in paths:
        gray = loader(Path(data_root) / path)
        images.append(verification_image(gray))
        features.append(appearance_features(gray))
    return images, features


def read_images(
    data_root: Path,
    paths: Sequence[str],
    loader: Callable[[Path], np.ndarray] = load_gray,
    workers: int = DEFAULT_WORKERS,
) -> AuditImages:
    """`AuditImages` of the images at `paths` (relative to `data_root`), each decoded once, in
    `workers` processes (default: one per core; `loader` must then be a module-level function)."""
    results = map_path_batches(_read, data_root, paths, loader, workers)
    images = [image for part, _ in results for image in part]
    rows = [row for _, part in results for row in part]
    stack = np.stack(images) if images else np.zeros((0, VERIFY_SIZE, VERIFY_SIZE), dtype=np.uint8)
    return AuditImages(stack, pd.DataFrame(rows, columns=list(APPEARANCE_FEATURES)))
