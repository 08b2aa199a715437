"""Which version of the data a run used: DVC's hash of the data folder when DVC tracks it and
the folder matches it, and always the sha256 of the manifest (which lists every file's sha256,
so it identifies the content even without DVC)."""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import subprocess
import sys
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


class DvcError(RuntimeError):
    """DVC is missing, not initialised, or failed; the message says what to do."""


def _dvc_command() -> list[str]:
    """`dvc` on PATH, else the `dvc` module of this interpreter; DvcError when neither."""
    found = shutil.which("dvc")
    if found:
        return [found]
    if importlib.util.find_spec("dvc") is not None:
        return [sys.executable, "-m", "dvc"]
    raise DvcError(
        "dvc is not on PATH (nor importable here): install it (`pip install dvc`), then run "
        "`dvc add data/raw` to version the data"
    )


def dvc_root(path: Path) -> Path | None:
    """The DVC repository (folder holding `.dvc/`) that `path` lies in, if any."""
    for folder in (Path(path).resolve(), *Path(path).resolve().parents):
        if (folder / ".dvc").is_dir():
            return folder
    return None


def dvc_add(data_dir: Path) -> Path:
    """Record a new DVC version of `data_dir` (`dvc add`, as `make data` does); returns the
    `.dvc` file. Unchanged data leaves the `.dvc` file as it was."""
    data_dir = Path(data_dir).resolve()
    command = _dvc_command()
    root = dvc_root(data_dir.parent)
    if root is None:
        raise DvcError(
            f"{data_dir} is not inside a DVC repository (no .dvc folder above it): run "
            f"`dvc init` in the project, then `dvc add {data_dir}`"
        )
    done = subprocess.run(
        [*command, "add", "--quiet", str(data_dir.relative_to(root))],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["(no output)"]
        raise DvcError(f"`dvc add {data_dir}` failed: {lines[-1]}")
    return _dvc_file(data_dir)
