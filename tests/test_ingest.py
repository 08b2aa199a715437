"""Ingestion: layouts, class names, quarantine, zip safety, URL download, full-set counts."""

from __future__ import annotations

import hashlib
import http.server
import io
import shutil
import stat
import threading
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from braintumor.constants import CLASS_NAMES
from braintumor.data.ingest import ingest, load_checksums
from braintumor.data.manifest import COLUMNS, read_manifest
from braintumor.data.sources import (
    SourceError,
    UnknownClassError,
    UnsafeArchiveError,
    normalise_class,
)

PLANTED = {
    "Training/glioma_tumor/planted_zero_bytes.jpg": "empty_file",
    "Training/meningioma_tumor/planted_truncated.jpg": "truncated",
    "Training/no_tumor/planted_not_an_image.jpg": "not_an_image",
    "Training/pituitary_tumor/planted_undecodable.jpg": "undecodable",
}


def _zip_folder(folder: Path, target: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, prefix + path.relative_to(folder).as_posix())
    return target


@pytest.fixture(scope="module")
def sample_result(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("ingest") / "data" / "raw"
    return ingest(sample_dir, out_dir=out)


def test_sample_counts_and_manifest(sample_result, sample_dir: Path) -> None:
    counts = sample_result.counts()
    assert counts.loc["training", "total"] == 25 and counts.loc["testing", "total"] == 9
    assert counts.loc["training", "notumor"] == 7  # 6 + the planted cross-split twin
    manifest = read_manifest(sample_result.out_dir)
    assert list(manifest.columns) == list(COLUMNS)
    assert set(manifest["label"]) == set(CLASS_NAMES)
    # Bytes are copied unchanged, and the manifest's sha256 is theirs.
    for row in manifest.itertuples():
        data = (sample_result.out_dir / row.path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row.sha256
        assert (sample_dir / row.source_path).read_bytes() == data
        assert row.path.startswith(f"{row.split}/{row.label}/")
    assert manifest["path"].is_monotonic_increasing  # deterministic order for DVC


def test_every_kind_of_bad_file_is_quarantined_with_its_reason(sample_result) -> None:
    quarantine = sample_result.quarantine.set_index("source_path")
    assert dict(quarantine["reason"]) == PLANTED
    listed = pd.read_csv(sample_result.out_dir.parent / "quarantine.csv")
    assert sorted(listed["source_path"]) == sorted(PLANTED)
    assert listed["detail"].str.len().min() > 5
    for row in listed.itertuples():  # nothing is lost: the bad file is kept, byte for byte
        kept = sample_result.out_dir.parent / row.quarantine_path
        assert kept.is_file() and kept.stat().st_size == row.file_size
    assert not set(PLANTED) & set(read_manifest(sample_result.out_dir)["source_path"])


def test_pixels_hash_is_shared_by_the_planted_cross_split_twin(sample_result) -> None:
    manifest = read_manifest(sample_result.out_dir).set_index("source_path")
    twin_a = manifest.loc["Testing/no_tumor/image(100).jpg"]
    twin_b = manifest.loc["Training/no_tumor/image(266).jpg"]
    assert twin_a.pixel_sha256 == twin_b.pixel_sha256 and twin_a.phash == twin_b.phash


def test_flat_layout_zip_with_wrapper_and_class_aliases(sample_dir: Path, tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    for folder, alias in [("glioma_tumor", "Glioma"), ("no_tumor", "notumor")]:
        shutil.copytree(sample_dir / "Training" / folder, flat / alias)
    (flat / "Glioma" / ".DS_Store").write_bytes(b"\0junk")
    archive = _zip_folder(flat, tmp_path / "flat.zip", prefix="wrapper-master/")
    result = ingest(archive, out_dir=tmp_path / "out" / "raw")
    assert set(result.manifest["split"]) == {"unsplit"}
    assert set(result.manifest["label"]) == {"glioma", "notumor"}
    assert result.ignored == ["Glioma/.DS_Store"]
    assert result.manifest["source_path"].str.startswith(("Glioma/", "notumor/")).all()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("glioma_tumor", "glioma"),
        ("No_Tumor", "notumor"),
        ("notumor", "notumor"),
        ("pituitary_tumor", "pituitary"),
        ("meningioma", "meningioma"),
        ("astrocytoma", None),
    ],
)
def test_class_names_are_normalised(name: str, expected: str | None) -> None:
    assert normalise_class(name) == expected


def test_unknown_class_folder_is_a_clear_error(sample_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(sample_dir / "Training" / "glioma_tumor", tmp_path / "src" / "glioma")
    (tmp_path / "src" / "astrocytoma").mkdir()
    with pytest.raises(UnknownClassError, match="astrocytoma"):
        ingest(tmp_path / "src", out_dir=tmp_path / "out" / "raw")
    assert not (tmp_path / "out" / "raw").exists()


def _evil_zip(path: Path, entry: str, payload: bytes = b"x", symlink: bool = False) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("Training/glioma_tumor/ok.txt", b"fine")
        info = zipfile.ZipInfo(entry)
        if symlink:
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, payload)
    return path


@pytest.mark.parametrize(
    ("entry", "symlink", "message"),
    [
        ("../escaped.jpg", False, "outside"),
        ("Training/glioma_tumor/../../../escaped.jpg", False, "outside"),
        ("/tmp/absolute.jpg", False, "outside"),
        ("C:/windows.jpg", False, "outside"),
        ("Training/glioma_tumor/link.jpg", True, "symbolic link"),
    ],
)
def test_zip_slip_and_links_are_refused(
    tmp_path: Path, entry: str, symlink: bool, message: str
) -> None:
    archive = _evil_zip(tmp_path / "evil.zip", entry, b"/etc/passwd", symlink)
    with pytest.raises(UnsafeArchiveError, match=message):
        ingest(archive, out_dir=tmp_path / "out" / "raw")
    assert not (tmp_path / "escaped.jpg").exists() and not (tmp_path / "out" / "raw").exists()


def test_zip_expanding_past_the_limit_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as bomb:
        bomb.writestr("Training/glioma_tumor/a.jpg", b"\0" * 5_000_000)
    assert archive.stat().st_size < 50_000
    with pytest.raises(UnsafeArchiveError, match="expands to more than"):
        ingest(archive, out_dir=tmp_path / "out" / "raw", max_extract_bytes=1_000_000)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server(tmp_path: Path):
    root = tmp_path / "www"
    root.mkdir()
    handler = lambda *a, **k: _QuietHandler(*a, directory=str(root), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_url_source_is_downloaded_and_its_checksum_verified(
    sample_dir, http_server, tmp_path
) -> None:
    www, base = http_server
    archive = _zip_folder(sample_dir, www / "dataset.zip")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    seen: list[int] = []
    result = ingest(
        f"{base}/dataset.zip",
        out_dir=tmp_path / "a" / "raw",
        expected_sha256=digest,
        cache_dir=tmp_path / "cache",
        download_progress=lambda done, total: seen.append(done),
    )
    assert len(result.manifest) == 34 and seen[-1] == archive.stat().st_size
    with pytest.raises(SourceError, match="checksum mismatch"):
        ingest(
            f"{base}/dataset.zip",
            out_dir=tmp_path / "b" / "raw",
            expected_sha256="0" * 64,
            cache_dir=tmp_path / "cache2",
        )
    assert not (tmp_path / "b" / "raw").exists()
    assert not list((tmp_path / "cache2").glob("*"))  # the bad download was deleted
    with pytest.raises(SourceError, match="could not download"):
        ingest(f"{base}/missing.zip", out_dir=tmp_path / "c" / "raw", cache_dir=tmp_path / "cache3")


def test_reingesting_replaces_the_previous_data(sample_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "data" / "raw"
    ingest(sample_dir, out_dir=out)
    (out / "stale.txt").write_text("left over")
    ingest(sample_dir, out_dir=out)
    assert not (out / "stale.txt").exists() and (out / "manifest.csv").is_file()


def test_checksum_list_round_trip(sample_dir: Path, tmp_path: Path) -> None:
    listing = tmp_path / "list.sha256"
    good = sorted(p for p in sample_dir.rglob("*.jpg") if "planted" not in p.name)
    lines = [
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  ./{p.relative_to(sample_dir)}" for p in good
    ]
    listing.write_text("\n".join(lines) + "\n")
    result = ingest(sample_dir, out_dir=tmp_path / "raw", checksums=listing)
    report = result.checksum_report
    assert report.matched == 34 and not report.mismatched and not report.missing
    assert sorted(report.unexpected) == sorted(PLANTED)
    assert not report.ok


@pytest.mark.full_data
def test_full_dataset_counts_match_the_published_table(
    full_dataset_dir: Path, tmp_path: Path
) -> None:
    result = ingest(full_dataset_dir, out_dir=tmp_path / "raw", checksums="sartaj-3ea9f4e")
    counts = result.counts()
    expected = {
        "training": {"glioma": 826, "meningioma": 822, "notumor": 395, "pituitary": 827},
        "testing": {"glioma": 100, "meningioma": 115, "notumor": 105, "pituitary": 74},
    }
    for split, per_class in expected.items():
        assert counts.loc[split, list(per_class)].to_dict() == per_class
    assert counts.loc["training", "total"] == 2870 and counts.loc["testing", "total"] == 394
    assert result.quarantine.empty
    assert result.checksum_report.ok and result.checksum_report.matched == 3264
    assert len(load_checksums("sartaj-3ea9f4e")) == 3264


def test_zip_is_detected_by_content_not_name(tmp_path: Path) -> None:
    buffer = io.BytesIO(b"not a zip at all")
    (tmp_path / "data.zip").write_bytes(buffer.getvalue())
    with pytest.raises(SourceError, match="not a zip"):
        ingest(tmp_path / "data.zip", out_dir=tmp_path / "raw")
