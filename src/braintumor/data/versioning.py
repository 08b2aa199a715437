"""Which version of the data a run used: DVC's hash of the data folder when DVC tracks it and
the folder matches it, and always the sha256 of the manifest (which lists every file's sha256,
so it identifies the content even without DVC)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import yaml

from braintumor.constants import MANIFEST_FILE


class DataOutOfSyncError(RuntimeError):
    """The data folder differs from what DVC last recorded for it."""


@dataclass(frozen=True)
class DataVersion:
    manifest_sha256: str
    dvc_md5: str | None  # None when the folder is not tracked by DVC

    @property
    def key(self) -> str:
        """The value pipelines take as their `data_hash` parameter (invalidates caches)."""
        return f"dvc:{self.dvc_md5}" if self.dvc_md5 else f"manifest:{self.manifest_sha256}"


def _dvc_file(data_dir: Path) -> Path:
    return data_dir.with_name(data_dir.name + ".dvc")


def data_version(data_dir: Path) -> DataVersion:
    """Identify the data in `data_dir`; refuses a DVC-tracked folder that was changed since
    `dvc add`, so a run can never record a hash that is not the data it used."""
    data_dir = Path(data_dir)
    manifest = data_dir / MANIFEST_FILE
    if not manifest.is_file():
        raise FileNotFoundError(
            f"no {MANIFEST_FILE} in {data_dir}: run `braintumor data ingest` or `dvc pull` first"
        )
    manifest_sha = hashlib.sha256(manifest.read_bytes()).hexdigest()
    dvc_file = _dvc_file(data_dir)
    if not dvc_file.is_file():
        return DataVersion(manifest_sha, None)
    from dvc.repo import Repo

    with Repo(str(Repo.find_root(str(data_dir.resolve().parent)))) as repo:
        status = repo.status(targets=[str(dvc_file.resolve())])
    if status:
        raise DataOutOfSyncError(
            f"{data_dir} has changed since DVC last recorded it ({dvc_file}): run "
            f"`dvc add {data_dir}` (or `make data`) to version it, or `dvc checkout` to undo"
        )
    md5 = yaml.safe_load(dvc_file.read_text())["outs"][0]["md5"]
    return DataVersion(manifest_sha, md5)
