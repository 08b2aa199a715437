"""Growing data/raw batch by batch: `add_batch` appends a labelled source next to what is there.

An added batch goes to `data/raw/<source>/<split>/<label>/<file>` and its rows are appended
to the manifest with `source` set to the batch's name; unusable files are quarantined under
`data/quarantine/<source>/` and appended to quarantine.csv, as ingestion does. A file is
known by its source name and its path inside the batch (`source`, `source_path`): adding the
same batch again skips every file and writes nothing. The same picture under another source
name is kept: finding such copies is the audit's job (`integrity.figures.source_figures`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from braintumor.constants import CLASS_NAMES, MANIFEST_FILE, QUARANTINE_FILE
from braintumor.data.ingest import (
    QUARANTINE_COLUMNS,
    InspectedFile,
    Progress,
    inspect_folder,
    manifest_row,
    quarantine_row,
    unique_target,
)
from braintumor.data.manifest import (
    COLUMNS,
    read_manifest,
    upgrade_source_columns,
    write_manifest,
)
from braintumor.data.sources import LocalSource, SourceError, check_source_name
from braintumor.imaging import DEFAULT_MAX_PIXELS


@dataclass
class AddResult:
    """What `add_batch` appended (only new files), and the manifest afterwards."""

    source: str
    added: pd.DataFrame
    quarantined: pd.DataFrame
    already_present: int
    manifest: pd.DataFrame
    ignored: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(len(self.added) or len(self.quarantined))


def source_counts(manifest: pd.DataFrame) -> pd.DataFrame:
    """Images per source (rows) and class (columns), with a `total` column."""
    table = pd.crosstab(manifest["source"], manifest["label"]).reindex(
        columns=list(CLASS_NAMES), fill_value=0
    )
    table["total"] = table.sum(axis=1)
    return table


def read_quarantine(data_parent: Path) -> pd.DataFrame:
    """quarantine.csv next to data/raw (empty when there is none), in today's columns."""
    target = Path(data_parent) / QUARANTINE_FILE
    if not target.is_file():
        return pd.DataFrame(columns=list(QUARANTINE_COLUMNS))
    frame = upgrade_source_columns(pd.read_csv(target, dtype=str, keep_default_na=False))
    return frame.reindex(columns=list(QUARANTINE_COLUMNS), fill_value="")


def _known_files(manifest: pd.DataFrame, quarantine: pd.DataFrame, name: str) -> dict[str, str]:
    """{source_path: sha256} of the files already taken from source `name`."""
    known = {}
    for frame in (manifest, quarantine):
        rows = frame[frame["source"] == name]
        known.update(zip(rows["source_path"], rows["sha256"], strict=True))
    return known


def _new_files(
    inspected: list[InspectedFile], known: dict[str, str], name: str
) -> list[InspectedFile]:
    """The files not yet taken from this source; a known path with new content is an error."""
    new, changed = [], []
    for item in inspected:
        before = known.get(item.source_path)
        if before is None:
            new.append(item)
        elif before != item.info["sha256"]:
            changed.append(item.source_path)
    if changed:
        raise SourceError(
            f"source {name!r} already holds {len(changed)} file(s) with other content at the "
            f"same path (e.g. {changed[0]}): add the new version under another --source name"
        )
    return new


def add_batch(
    location: str | Path,
    name: str,
    raw_dir: Path = Path("data/raw"),
    quarantine_dir: Path | None = None,
    cache_dir: Path | None = None,
    expected_sha256: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    download_progress: Callable[[int, int | None], None] | None = None,
    progress: Progress | None = None,
) -> AddResult:
    """Append the labelled batch at `location` (folder, zip or URL) to `raw_dir` as `name`.

    Everything is read and checked before anything is written: unknown class folders, a
    changed file, or a batch without any image raise and leave `raw_dir` as it was. A missing
    `raw_dir` starts empty (the batch is then the first source).
    """
    check_source_name(name)
    raw_dir = Path(raw_dir)
    quarantine_dir = Path(quarantine_dir) if quarantine_dir else raw_dir.parent / "quarantine"
    cache_dir = Path(cache_dir or Path.home() / ".cache" / "braintumor" / "downloads")
    if raw_dir.exists() or (raw_dir / MANIFEST_FILE).exists():
        manifest = read_manifest(raw_dir)
    else:
        manifest = pd.DataFrame(columns=list(COLUMNS))
    quarantine = read_quarantine(raw_dir.parent)

    with LocalSource(location, cache_dir, expected_sha256, progress=download_progress) as root:
        inspected, ignored = inspect_folder(root, max_pixels, progress)
        if not inspected:
            raise SourceError(f"no files found in the class folders of {location}")
        known = _known_files(manifest, quarantine, name)
        new = _new_files(inspected, known, name)
        if not known and not any(item.usable for item in new):
            raise SourceError(
                f"no usable images in {location} (every file failed to decode); nothing added"
            )
        taken = set(manifest["path"]) | set(quarantine["quarantine_path"])
        rows, bad_rows, copies = [], [], []
        for item in new:
            sha = str(item.info["sha256"])
            if item.usable:
                relative = unique_target(f"{name}/{item.canonical}", taken, sha)
                rows.append(manifest_row(item, relative, name))
                copies.append((item.path, raw_dir / relative))
            else:
                relative = unique_target(
                    f"{quarantine_dir.name}/{name}/{item.canonical}", taken, sha
                )
                bad_rows.append(quarantine_row(item, relative, name))
                copies.append((item.path, quarantine_dir.parent / relative))
            taken.add(relative)
        added = pd.DataFrame(rows, columns=list(COLUMNS))
        quarantined = pd.DataFrame(bad_rows, columns=list(QUARANTINE_COLUMNS))
        if copies:
            _write(copies, raw_dir, manifest, added, quarantine, quarantined)
    after = read_manifest(raw_dir) if copies else manifest
    return AddResult(name, added, quarantined, len(inspected) - len(new), after, ignored)


def _write(
    copies: list[tuple[Path, Path]],
    raw_dir: Path,
    manifest: pd.DataFrame,
    added: pd.DataFrame,
    quarantine: pd.DataFrame,
    quarantined: pd.DataFrame,
) -> None:
    """Copy the files, then replace manifest.csv and quarantine.csv; undo the copies if any
    step fails, so a failed add leaves the data as it was."""
    written: list[Path] = []
    try:
        for source, target in copies:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            written.append(target)
        raw_dir.mkdir(parents=True, exist_ok=True)
        frames = [f for f in (manifest, added) if len(f)]
        staging = Path(tempfile.mkdtemp(prefix=".add-", dir=raw_dir.parent))
        try:
            staged = write_manifest(pd.concat(frames, ignore_index=True), staging)
            bad = pd.concat([f for f in (quarantine, quarantined) if len(f)] or [quarantined])
            staged_bad = staging / QUARANTINE_FILE
            bad.to_csv(staged_bad, index=False, lineterminator="\n")
            os.replace(staged, raw_dir / MANIFEST_FILE)
            os.replace(staged_bad, raw_dir.parent / QUARANTINE_FILE)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
