"""Ingestion: any source -> `data/raw/<split>/<label>/<file>` + manifest.csv, with every bad
file quarantined (copied to `data/quarantine/`, listed with its reason in quarantine.csv).

Files are copied byte for byte; each is fully decoded to prove it is a usable image, and its
fingerprints are computed once here and cached in the manifest.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import pandas as pd

from braintumor.constants import CLASS_NAMES, DEFAULT_SOURCE_NAME, QUARANTINE_FILE, UNSPLIT
from braintumor.data.manifest import COLUMNS, read_manifest, write_manifest
from braintumor.data.sources import (
    IGNORED_NAMES,
    ClassFolder,
    LocalSource,
    check_source_name,
    find_class_folders,
)
from braintumor.imaging import DEFAULT_MAX_PIXELS, ImageDecodeError, decode_image
from braintumor.integrity.hashing import fingerprint

QUARANTINE_COLUMNS = (
    "quarantine_path",
    "source",
    "source_path",
    "split",
    "label",
    "reason",
    "detail",
    "sha256",
    "file_size",
)

Progress = Callable[[int, int], None]


@dataclass
class IngestResult:
    """What an ingestion produced and where."""

    out_dir: Path
    manifest: pd.DataFrame
    quarantine: pd.DataFrame
    ignored: list[str] = field(default_factory=list)
    checksum_report: ChecksumReport | None = None

    def counts(self) -> pd.DataFrame:
        """Accepted images per source split (rows) and class (columns), with totals."""
        table = pd.crosstab(self.manifest["split"], self.manifest["label"]).reindex(
            columns=list(CLASS_NAMES), fill_value=0
        )
        table["total"] = table.sum(axis=1)
        return table


@dataclass(frozen=True)
class ChecksumReport:
    """Ingested files compared with a published checksum list (by source path)."""

    matched: int
    mismatched: list[str]
    missing: list[str]
    unexpected: list[str]

    @property
    def ok(self) -> bool:
        return not (self.mismatched or self.missing or self.unexpected)


def _list_files(folder: ClassFolder) -> tuple[list[Path], list[Path]]:
    files, ignored = [], []
    for path in sorted(folder.path.rglob("*")):
        if path.is_dir():
            continue
        relative = path.relative_to(folder.path)
        if any(part in IGNORED_NAMES or part.startswith(".") for part in relative.parts):
            ignored.append(path)
        else:
            files.append(path)
    return files, ignored


def inspect_file(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> dict[str, object]:
    """Read, hash and fully decode one file. Returns manifest fields, or `reason`/`detail`."""
    data = path.read_bytes()
    info: dict[str, object] = {
        "sha256": hashlib.sha256(data).hexdigest(),
        "file_size": len(data),
    }
    try:
        decoded = decode_image(data, max_pixels=max_pixels)
    except ImageDecodeError as exc:
        info.update(reason=exc.reason, detail=exc.detail)
        return info
    info.update(
        width=decoded.width,
        height=decoded.height,
        mode=decoded.mode,
        format=decoded.format,
        **fingerprint(decoded.pixels),
    )
    return info


def unique_target(relative: str, taken: set[str], sha256: str) -> str:
    if relative not in taken:
        return relative
    stem, dot, suffix = relative.rpartition(".")
    return f"{stem}__{sha256[:8]}{dot}{suffix}" if dot else f"{relative}__{sha256[:8]}"


@dataclass(frozen=True)
class InspectedFile:
    """One file of a source, read and checked (`info` holds `reason` when it is unusable)."""

    path: Path
    folder: ClassFolder
    info: dict[str, object]

    @property
    def usable(self) -> bool:
        return "reason" not in self.info

    @property
    def source_path(self) -> str:
        """The file's path inside the dataset, whatever wrapper folders an archive added."""
        return self.path.relative_to(_dataset_root(self.folder)).as_posix()

    @property
    def canonical(self) -> str:
        """`<split>/<label>/<path inside the class folder>`."""
        inner = self.path.relative_to(self.folder.path).as_posix()
        return f"{self.folder.split}/{self.folder.label}/{inner}"


def inspect_folder(
    root: Path,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: Progress | None = None,
    workers: int | None = None,
) -> tuple[list[InspectedFile], list[str]]:
    """Find the class folders of `root` (unknown class names raise before any file is read)
    and inspect every file. Returns the files and the system files ignored."""
    folders = find_class_folders(root)
    jobs: list[tuple[Path, ClassFolder]] = []
    ignored: list[str] = []
    for folder in folders:
        files, skipped = _list_files(folder)
        jobs += [(path, folder) for path in files]
        ignored += [path.relative_to(_dataset_root(folder)).as_posix() for path in skipped]

    workers = workers or min(8, os.cpu_count() or 1)
    inspected: list[InspectedFile] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for done, info in enumerate(pool.map(lambda job: inspect_file(job[0], max_pixels), jobs)):
            inspected.append(InspectedFile(jobs[done][0], jobs[done][1], info))
            if progress:
                progress(done + 1, len(jobs))
    return inspected, ignored


def manifest_row(item: InspectedFile, relative: str, source: str) -> dict[str, object]:
    return {
        **item.info,
        "path": relative,
        "split": item.folder.split,
        "label": item.folder.label,
        "source": source,
        "source_path": item.source_path,
    }


def quarantine_row(item: InspectedFile, quarantine_path: str, source: str) -> dict[str, object]:
    return {
        "quarantine_path": quarantine_path,
        "source": source,
        "source_path": item.source_path,
        "split": item.folder.split,
        "label": item.folder.label,
        **{key: item.info[key] for key in ("reason", "detail", "sha256", "file_size")},
    }


def ingest_folder(
    root: Path,
    out_dir: Path,
    quarantine_dir: Path,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: Progress | None = None,
    workers: int | None = None,
    source_name: str = DEFAULT_SOURCE_NAME,
) -> IngestResult:
    """Validate every file under the class folders of `root` and write the canonical layout.

    `out_dir` and `quarantine_dir` are replaced as a whole, only after everything succeeded.
    """
    inspected, ignored = inspect_folder(root, max_pixels, progress, workers)
    out_dir, quarantine_dir = Path(out_dir), Path(quarantine_dir)
    staging = Path(tempfile.mkdtemp(prefix=".ingest-", dir=out_dir.parent))
    try:
        staged_raw, staged_bad = staging / "raw", staging / "quarantine"
        rows, bad_rows, taken = [], [], set()
        for item in inspected:
            relative = unique_target(item.canonical, taken, str(item.info["sha256"]))
            taken.add(relative)
            if not item.usable:
                shutil.copyfile(item.path, _prepared(staged_bad / relative))
                bad_rows.append(
                    quarantine_row(item, f"{quarantine_dir.name}/{relative}", source_name)
                )
                continue
            shutil.copyfile(item.path, _prepared(staged_raw / relative))
            rows.append(manifest_row(item, relative, source_name))
        if not rows:
            raise ValueError(f"no usable images found under {root}; see the quarantine list")
        manifest = pd.DataFrame(rows, columns=list(COLUMNS))
        write_manifest(manifest, staged_raw)
        quarantine = pd.DataFrame(bad_rows, columns=list(QUARANTINE_COLUMNS))
        _swap(staged_raw, out_dir)
        if quarantine_dir.exists():
            shutil.rmtree(quarantine_dir)
        if bad_rows:
            staged_bad.replace(quarantine_dir)
        quarantine.to_csv(quarantine_dir.parent / QUARANTINE_FILE, index=False, lineterminator="\n")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return IngestResult(out_dir, read_manifest(out_dir), quarantine, ignored)


def _dataset_root(folder: ClassFolder) -> Path:
    """The folder a layout starts at, so provenance paths do not depend on wrapper folders."""
    return folder.path.parent if folder.split == UNSPLIT else folder.path.parent.parent


def _prepared(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _swap(staged: Path, target: Path) -> None:
    """Replace `target` with `staged` (same filesystem), keeping the old one until done."""
    old = target.with_name(f".{target.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        target.replace(old)
    staged.replace(target)
    if old.exists():
        shutil.rmtree(old)


def ingest(
    source: str | Path,
    out_dir: Path = Path("data/raw"),
    quarantine_dir: Path | None = None,
    expected_sha256: str | None = None,
    checksums: Path | str | None = None,
    cache_dir: Path | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_extract_bytes: int | None = None,
    download_progress: Callable[[int, int | None], None] | None = None,
    progress: Progress | None = None,
    source_name: str = DEFAULT_SOURCE_NAME,
) -> IngestResult:
    """Ingest `source` (folder, zip or URL) into `out_dir`, replacing what was there.

    Args:
        source: a folder in the Kaggle or flat layout, a zip of either, or an http(s) URL.
        out_dir: where the canonical layout and manifest.csv go (replaced as a whole).
        quarantine_dir: where bad files are copied; defaults to `<out_dir>/../quarantine`.
        expected_sha256: checksum of the zip (URL or local zip); a mismatch is an error.
        checksums: a `sha256sum`-style list (paths relative to the dataset root, optionally
            `.gz`) or a known name such as `sartaj-3ea9f4e`; ingested files are compared
            with it and the result is returned as `checksum_report`.
        cache_dir: where downloads are kept (default `~/.cache/braintumor/downloads`).
        source_name: the manifest's `source` for every image (`braintumor data add` appends
            further sources).
    """
    check_source_name(source_name)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    quarantine_dir = Path(quarantine_dir) if quarantine_dir else out_dir.parent / "quarantine"
    cache_dir = Path(cache_dir or Path.home() / ".cache" / "braintumor" / "downloads")
    kwargs = {} if max_extract_bytes is None else {"max_extract_bytes": max_extract_bytes}
    with LocalSource(
        source, cache_dir, expected_sha256, progress=download_progress, **kwargs
    ) as root:
        result = ingest_folder(
            root, out_dir, quarantine_dir, max_pixels, progress, source_name=source_name
        )
        if checksums is not None:
            result.checksum_report = compare_checksums(result, load_checksums(checksums))
    return result


def load_checksums(reference: Path | str) -> dict[str, str]:
    """Read a `sha256sum` list into {path relative to the dataset root: sha256}."""
    path = Path(reference)
    if not path.exists():
        package_file = resources.files("braintumor.data") / "known" / f"{reference}.sha256.gz"
        if not package_file.is_file():
            raise FileNotFoundError(f"no checksum list {reference!r} (file or known name)")
        text = gzip.decompress(package_file.read_bytes()).decode()
    elif path.suffix == ".gz":
        text = gzip.decompress(path.read_bytes()).decode()
    else:
        text = path.read_text()
    entries = {}
    for line in text.splitlines():
        if line.strip():
            digest, name = line.split(None, 1)
            entries[name.strip().lstrip("*").removeprefix("./")] = digest.lower()
    return entries


def compare_checksums(result: IngestResult, expected: dict[str, str]) -> ChecksumReport:
    """Compare ingested files (accepted and quarantined) with `expected`, by source path
    (relative to the dataset root, whatever wrapper folders an archive added)."""
    seen = dict(zip(result.manifest["source_path"], result.manifest["sha256"], strict=True))
    seen.update(zip(result.quarantine["source_path"], result.quarantine["sha256"], strict=True))
    mismatched = sorted(n for n in seen.keys() & expected.keys() if seen[n] != expected[n])
    return ChecksumReport(
        matched=len(seen.keys() & expected.keys()) - len(mismatched),
        mismatched=mismatched,
        missing=sorted(expected.keys() - seen.keys()),
        unexpected=sorted(seen.keys() - expected.keys()),
    )
