"""Where data comes from: a folder (Kaggle `Training|Testing/<class>/*` or flat `<class>/*`),
a `.zip` of either, or an http(s) URL of such a zip. This module turns any of them into a
local folder and finds its class folders; `ingest` validates the files.
"""

from __future__ import annotations

import hashlib
import re
import stat
import tempfile
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from braintumor.constants import CLASS_ALIASES, SOURCE_SPLITS, UNSPLIT

# The public GitHub archive of the Kaggle dataset (commit 3ea9f4e, unchanged since 2020).
DEFAULT_SOURCE = (
    "https://github.com/SartajBhuvaji/Brain-Tumor-Classification-DataSet/"
    "archive/refs/heads/master.zip"
)
# Refuse archives that would expand past this (zip bombs); the dataset is ~93 MB.
DEFAULT_MAX_EXTRACT_BYTES = 4 * 1024**3
DEFAULT_MAX_DOWNLOAD_BYTES = 4 * 1024**3
# Folders and files that operating systems and archivers add; never data.
IGNORED_NAMES = {"__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini", ".ipynb_checkpoints"}


class SourceError(ValueError):
    """A source that cannot be used as it is; the message says what to do."""


# A source name is a folder under data/raw and a column value: short, lower case, no spaces.
_SOURCE_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")


def check_source_name(name: str) -> str:
    """`name` if it can name a source (a batch of images), else a SourceError saying why."""
    if not _SOURCE_NAME.fullmatch(name or ""):
        raise SourceError(
            f"invalid source name {name!r}: use lower-case letters, digits, '-', '_' or '.' "
            "(starting with a letter or digit, at most 64 characters), e.g. figshare-br35h"
        )
    if name in (*SOURCE_SPLITS, UNSPLIT):
        raise SourceError(f"source name {name!r} is reserved (a split folder of data/raw)")
    return name


class UnsafeArchiveError(SourceError):
    """A zip that would write outside its folder, holds links, or expands too far."""


class UnknownClassError(SourceError):
    """A class folder whose name is not one of the known classes or their aliases."""


@dataclass(frozen=True)
class ClassFolder:
    """One folder of images: its source split (`training`/`testing`/`unsplit`) and label."""

    path: Path
    split: str
    label: str


def normalise_class(name: str) -> str | None:
    """`glioma_tumor` -> `glioma`, `No Tumor` -> `notumor`; None when unknown."""
    key = name.strip().lower().replace(" ", "_")
    return CLASS_ALIASES.get(key) or CLASS_ALIASES.get(key.replace("-", "_"))


def is_url(source: str) -> bool:
    return urllib.parse.urlparse(source).scheme in ("http", "https")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def download(
    url: str,
    target: Path,
    expected_sha256: str | None = None,
    max_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES,
    progress: Callable[[int, int | None], None] | None = None,
) -> Path:
    """Download `url` to `target` (via a .part file) and verify its sha256 when given.

    A file already at `target` with the expected checksum is reused. `progress(done, total)`
    is called as bytes arrive.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and expected_sha256 and sha256_file(target) == expected_sha256.lower():
        return target
    partial = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    done = 0
    request = urllib.request.Request(url, headers={"User-Agent": "braintumor-ingest"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            if total and total > max_bytes:
                raise SourceError(f"{url} is {total:,} bytes, over the {max_bytes:,} byte limit")
            while block := response.read(1 << 20):
                done += len(block)
                if done > max_bytes:
                    raise SourceError(f"{url} sent more than the {max_bytes:,} byte limit")
                digest.update(block)
                out.write(block)
                if progress:
                    progress(done, total)
    except SourceError:
        partial.unlink(missing_ok=True)
        raise
    except OSError as exc:  # URLError, HTTPError, timeouts, disk errors
        partial.unlink(missing_ok=True)
        raise SourceError(
            f"could not download {url}: {exc}. Without network, point BRAINTUMOR_DATA_SOURCE "
            "(or the SOURCE argument) at a local copy of the dataset (folder or zip)."
        ) from None
    actual = digest.hexdigest()
    if expected_sha256 and actual != expected_sha256.lower():
        partial.unlink(missing_ok=True)
        raise SourceError(
            f"checksum mismatch for {url}: expected sha256 {expected_sha256.lower()}, got "
            f"{actual}. The file was deleted; check the URL or the expected checksum."
        )
    partial.replace(target)
    return target


def check_zip_members(archive: zipfile.ZipFile, max_bytes: int) -> None:
    """Refuse zip-slip (absolute paths, `..`, drive letters), links and zip bombs."""
    total = 0
    for info in archive.infolist():
        name = info.filename
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if name.startswith(("/", "\\")) or (parts and ":" in parts[0]) or ".." in parts:
            raise UnsafeArchiveError(f"refusing zip entry {name!r}: it points outside the archive")
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise UnsafeArchiveError(f"refusing zip entry {name!r}: it is a symbolic link")
        total += info.file_size
        if total > max_bytes:
            raise UnsafeArchiveError(
                f"refusing archive: it expands to more than {max_bytes:,} bytes "
                "(raise the limit with --max-extract-bytes if this is expected)"
            )


def extract_zip(zip_path: Path, target: Path, max_bytes: int = DEFAULT_MAX_EXTRACT_BYTES) -> Path:
    """Extract safely into `target`, counting real bytes (declared sizes can lie)."""
    try:
        archive = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile:
        raise SourceError(f"{zip_path} is not a valid zip archive") from None
    with archive:
        check_zip_members(archive, max_bytes)
        written = 0
        target.mkdir(parents=True, exist_ok=True)
        for info in archive.infolist():
            destination = target.joinpath(*PurePosixPath(info.filename.replace("\\", "/")).parts)
            if info.is_dir():
                destination.mkdir(parents=True, exist_ok=True)
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, open(destination, "wb") as out:
                while block := src.read(1 << 20):
                    written += len(block)
                    if written > max_bytes:
                        raise UnsafeArchiveError(
                            f"refusing archive: it expands to more than {max_bytes:,} bytes"
                        )
                    out.write(block)
    return target


def _children(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.name not in IGNORED_NAMES and not p.name.startswith(".")
    )


def find_class_folders(root: Path) -> list[ClassFolder]:
    """Find the class folders under `root` in either supported layout.

    A wrapper folder with a single sub-folder (as in GitHub archives) is descended into.
    """
    root = Path(root)
    if not root.is_dir():
        raise SourceError(f"{root} is not a folder")
    folders = [p for p in _children(root) if p.is_dir()]
    while len(folders) == 1 and folders[0].name.lower() not in SOURCE_SPLITS:
        if normalise_class(folders[0].name):
            break
        root = folders[0]
        folders = [p for p in _children(root) if p.is_dir()]
    split_folders = [p for p in folders if p.name.lower() in SOURCE_SPLITS]
    if split_folders:
        found = []
        for split_dir in split_folders:
            split = SOURCE_SPLITS[split_dir.name.lower()]
            found += _label_folders(split_dir, split)
        return found
    return _label_folders(root, UNSPLIT)


def _label_folders(parent: Path, split: str) -> list[ClassFolder]:
    found, unknown = [], []
    for folder in (p for p in _children(parent) if p.is_dir()):
        label = normalise_class(folder.name)
        if label is None:
            unknown.append(folder.name)
        else:
            found.append(ClassFolder(folder, split, label))
    if unknown:
        known = ", ".join(sorted(set(CLASS_ALIASES)))
        raise UnknownClassError(
            f"unknown class folder(s) {sorted(unknown)} in {parent}. Expected one folder per "
            f"class named like: {known}; or a Training/ and Testing/ folder holding them."
        )
    if not found:
        raise SourceError(
            f"no class folders found in {parent}: expected Training/ and Testing/ folders, or "
            "one folder per class (glioma, meningioma, notumor, pituitary)"
        )
    return found


class LocalSource:
    """A context manager giving a local folder for any source; cleans up what it extracted."""

    def __init__(
        self,
        source: str | Path,
        cache_dir: Path,
        expected_sha256: str | None = None,
        max_extract_bytes: int = DEFAULT_MAX_EXTRACT_BYTES,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> None:
        self.source = str(source)
        self.cache_dir = Path(cache_dir)
        self.expected_sha256 = expected_sha256
        self.max_extract_bytes = max_extract_bytes
        self.progress = progress
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> Path:
        source = self.source
        if is_url(source):
            name = PurePosixPath(urllib.parse.urlparse(source).path).name or "download.zip"
            key = hashlib.sha256(source.encode()).hexdigest()[:12]
            source = str(
                download(
                    self.source,
                    self.cache_dir / f"{key}-{name}",
                    self.expected_sha256,
                    progress=self.progress,
                )
            )
        path = Path(source).expanduser()
        if not path.exists():
            raise SourceError(f"source {path} does not exist")
        if path.is_file():
            if self.expected_sha256 and not is_url(self.source):
                actual = sha256_file(path)
                if actual != self.expected_sha256.lower():
                    raise SourceError(
                        f"checksum mismatch for {path}: expected {self.expected_sha256}, "
                        f"got {actual}"
                    )
            if not zipfile.is_zipfile(path):
                raise SourceError(f"{path} is a file but not a zip archive")
            self._tmp = tempfile.TemporaryDirectory(prefix="braintumor-extract-")
            return extract_zip(path, Path(self._tmp.name), self.max_extract_bytes)
        return path

    def __exit__(self, *exc: object) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
