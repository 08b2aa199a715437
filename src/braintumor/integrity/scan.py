"""Build a manifest straight from an image folder (Kaggle layout or class folders).

Ingestion (`braintumor data ingest`) is the normal way to get a manifest; this reads a folder
in place so the audit, tests and benchmarks can run on any copy of the dataset without
ingesting it first. Paths stay relative to the folder (`Training/glioma_tumor/gg (1).jpg`),
splits and labels are canonical, and files that do not decode are returned apart with the
reason, never dropped silently.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from braintumor.constants import CLASS_ALIASES, SOURCE_SPLITS, UNSPLIT
from braintumor.data.manifest import COLUMNS
from braintumor.imaging import ImageDecodeError, decode_image
from braintumor.integrity.hashing import fingerprint

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".dcm"})


class FolderLayoutError(ValueError):
    """A folder that is not `<split>/<class>/<file>` or `<class>/<file>`."""


def _split_and_label(relative: Path) -> tuple[str, str] | None:
    parts = relative.parts
    if len(parts) == 3 and parts[0].lower() in SOURCE_SPLITS:
        split, label = SOURCE_SPLITS[parts[0].lower()], parts[1]
    elif len(parts) == 2:
        split, label = UNSPLIT, parts[0]
    else:
        return None
    canonical = CLASS_ALIASES.get(label.lower())
    return (split, canonical) if canonical else None


def _row(root: Path, path: Path, on_image: Callable[[str, np.ndarray], None] | None) -> dict:
    relative = path.relative_to(root)
    split, label = _split_and_label(relative)  # type: ignore[misc]
    data = path.read_bytes()
    decoded = decode_image(data)
    if on_image is not None:
        on_image(relative.as_posix(), decoded.pixels)
    return {
        "path": relative.as_posix(),
        "split": split,
        "label": label,
        "sha256": hashlib.sha256(data).hexdigest(),
        **fingerprint(decoded.pixels),
        "width": decoded.width,
        "height": decoded.height,
        "mode": decoded.mode,
        "format": decoded.format,
        "file_size": len(data),
        "source": relative.as_posix(),
    }


def manifest_from_folder(
    root: Path,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
    on_image: Callable[[str, np.ndarray], None] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(manifest, rejected) for the images under `root`.

    Args:
        root: a folder in the Kaggle layout (`Training|Testing/<class>/<file>`) or with one
            folder per class.
        workers: decoding threads (decoding releases the GIL).
        progress: called with (files done, files in all) every 200 files.
        on_image: called with (path, grayscale pixels) for every decoded image, e.g. to keep
            what a later step needs without decoding the file again.

    Returns:
        The manifest (columns `data.manifest.COLUMNS`, sorted by path) and a table
        `path, reason` of files that could not be decoded.
    """
    root = Path(root)
    if not root.is_dir():
        raise FolderLayoutError(f"{root} is not a folder")
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )
    files = [p for p in files if _split_and_label(p.relative_to(root)) is not None]
    if not files:
        raise FolderLayoutError(
            f"no images found under {root} in `<Training|Testing>/<class>/<file>` or "
            f"`<class>/<file>` folders (known classes: {sorted(set(CLASS_ALIASES.values()))})"
        )

    def read(path: Path) -> dict:
        try:
            return _row(root, path, on_image)
        except ImageDecodeError as exc:
            return {"path": path.relative_to(root).as_posix(), "reason": str(exc)}

    rows: list[dict] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for done, row in enumerate(pool.map(read, files), start=1):
            rows.append(row)
            if progress is not None and done % 200 == 0:
                progress(done, len(files))
    accepted = [r for r in rows if "reason" not in r]
    rejected = pd.DataFrame([r for r in rows if "reason" in r], columns=["path", "reason"])
    manifest = pd.DataFrame(accepted, columns=list(COLUMNS))
    return manifest.sort_values("path").reset_index(drop=True), rejected
