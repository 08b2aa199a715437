"""The manifest: one row per accepted image under a data root (e.g. data/raw).

Columns (a contract for every later stage):
- path: POSIX path relative to the data root, `<split>/<label>/<file>`
- split: the source's own split, `training`, `testing` or `unsplit`
- label: canonical class name (constants.CLASS_NAMES)
- sha256: of the file's bytes
- pixel_sha256, phash, phash_mirror, phash_head, phash_head_mirror: fingerprints
  (integrity.hashing.fingerprint; the head hashes are taken after cropping to the head)
- width, height, mode, format, file_size: what the file is
- source: the name of the batch the image came from (`kaggle` for `data ingest`, the
  `--source` name for `data add`); images of an added batch live under `<source>/`
- source_path: the file's path inside the folder or zip it was ingested from (provenance)

Manifests written before `source` named the batch had the provenance path in `source`;
`read_manifest` reads them as `source_path`, with `source` the default (`kaggle`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from braintumor.constants import CLASS_NAMES, DEFAULT_SOURCE_NAME, MANIFEST_FILE

COLUMNS: tuple[str, ...] = (
    "path",
    "split",
    "label",
    "sha256",
    "pixel_sha256",
    "phash",
    "phash_mirror",
    "phash_head",
    "phash_head_mirror",
    "width",
    "height",
    "mode",
    "format",
    "file_size",
    "source",
    "source_path",
)

_DTYPES = {"width": "int64", "height": "int64", "file_size": "int64"}


class ManifestError(ValueError):
    """A manifest that is missing, malformed or inconsistent with its data root."""


def write_manifest(frame: pd.DataFrame, root: Path) -> Path:
    """Write rows sorted by path (so the file, and its DVC hash, is deterministic)."""
    missing = set(COLUMNS) - set(frame.columns)
    if missing:
        raise ManifestError(f"manifest is missing columns {sorted(missing)}")
    ordered = frame.loc[:, list(COLUMNS)].sort_values("path").reset_index(drop=True)
    target = Path(root) / MANIFEST_FILE
    ordered.to_csv(target, index=False, lineterminator="\n")
    return target


def read_manifest(root: Path) -> pd.DataFrame:
    """Read and check `<root>/manifest.csv`; hashes stay strings."""
    target = Path(root) / MANIFEST_FILE
    if not target.is_file():
        raise ManifestError(
            f"no manifest at {target}: run `braintumor data ingest SOURCE` (or `dvc pull`) first"
        )
    frame = upgrade_source_columns(pd.read_csv(target, dtype=str, keep_default_na=False))
    missing = set(COLUMNS) - set(frame.columns)
    if missing:
        raise ManifestError(
            f"{target} is missing columns {sorted(missing)}: it was written by an older "
            "version of braintumor; re-run `braintumor data ingest SOURCE` to rebuild it"
        )
    unknown = set(frame["label"]) - set(CLASS_NAMES)
    if unknown:
        raise ManifestError(f"{target} has unknown labels {sorted(unknown)}")
    return frame.astype(_DTYPES)


def upgrade_source_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """A table written before `source` named the batch: its `source` (the provenance path)
    becomes `source_path` and every row gets the default source name. Others pass as they are.
    (Also used for quarantine.csv, which has the same two columns.)"""
    if "source_path" in frame.columns:
        return frame
    frame = frame.rename(columns={"source": "source_path"})
    position = frame.columns.get_loc("source_path") if "source_path" in frame.columns else 0
    frame.insert(int(position), "source", DEFAULT_SOURCE_NAME)
    return frame
