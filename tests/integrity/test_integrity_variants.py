"""Planted variants of real images are found and verified; distinct real images are not merged.

The 34 real images of tests/data/sample were checked by eye (a contact sheet of all of them):
they are 33 different pictures, because of the planted byte-identical pair
Testing/no_tumor/image(100).jpg = Training/no_tumor/image(266).jpg.
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from braintumor.data.ingest import ingest
from braintumor.data.manifest import COLUMNS
from braintumor.imaging import decode_image
from braintumor.integrity.appearance import appearance_table
from braintumor.integrity.dedup import find_duplicates
from braintumor.integrity.hashing import FINGERPRINT_COLUMNS, fingerprint, phash
from braintumor.integrity.images import read_images
from braintumor.integrity.index import hamming
from braintumor.integrity.policy import IntegrityPolicy
from braintumor.integrity.verify import (
    DEFAULT_MIN_CORRELATION,
    head_box,
    load_gray,
    pair_score,
    pearson,
    verification_image,
    verify_pairs,
)

PLANTED_PAIR = ("Testing/no_tumor/image(100).jpg", "Training/no_tumor/image(266).jpg")
# One real image per class (and one more of the minority class) to plant variants of.
ORIGINALS = (
    "Training/glioma_tumor/gg (242).jpg",
    "Training/meningioma_tumor/m (189).jpg",
    "Training/no_tumor/image (24).jpg",
    "Training/no_tumor/image(180).jpg",
    "Training/pituitary_tumor/p (33).jpg",
)


def _jpeg(gray: np.ndarray, quality: int) -> bytes:
    ok, data = cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return data.tobytes()


def _brighter(gray: np.ndarray, delta: int) -> np.ndarray:
    return np.clip(gray.astype(np.int16) + delta, 0, 255).astype(np.uint8)


def _half(gray: np.ndarray) -> np.ndarray:
    return cv2.resize(gray, (gray.shape[1] // 2, gray.shape[0] // 2), interpolation=cv2.INTER_AREA)


VARIANTS = {
    "jpeg70": lambda g: decode_image(_jpeg(g, 70)).pixels,
    "half": _half,
    "bright10": lambda g: _brighter(g, 10),
    "mirrored": lambda g: np.ascontiguousarray(g[:, ::-1]),
    "all_four": lambda g: decode_image(_jpeg(_brighter(_half(g[:, ::-1]), 10), 70)).pixels,
}


def _gray(sample_dir: Path, relative: str) -> np.ndarray:
    return decode_image((sample_dir / relative).read_bytes()).pixels


def _sample_images(sample_dir: Path) -> dict[str, np.ndarray]:
    return {
        p.relative_to(sample_dir).as_posix(): decode_image(p.read_bytes()).pixels
        for p in sorted(sample_dir.rglob("*.jpg"))
        if not p.name.startswith("planted_")
    }


def test_fingerprint_keys_are_manifest_columns(sample_dir):
    prints = fingerprint(_gray(sample_dir, ORIGINALS[0]))
    assert tuple(prints) == FINGERPRINT_COLUMNS
    assert set(FINGERPRINT_COLUMNS) <= set(COLUMNS)
    assert all(len(prints[k]) == 16 for k in FINGERPRINT_COLUMNS if k.startswith("phash"))
    with pytest.raises(ValueError, match="non-empty"):
        fingerprint(np.zeros((0, 5), np.uint8))


def test_exact_hash_follows_pixels_not_bytes(sample_dir):
    gray = _gray(sample_dir, ORIGINALS[0])
    png = decode_image(cv2.imencode(".png", gray)[1].tobytes()).pixels
    assert fingerprint(png)["pixel_sha256"] == fingerprint(gray)["pixel_sha256"]
    changed = gray.copy()
    changed[0, 0] ^= 1
    assert fingerprint(changed)["pixel_sha256"] != fingerprint(gray)["pixel_sha256"]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variants_hash_close_and_verify_as_the_same_picture(sample_dir, variant):
    threshold = IntegrityPolicy().hamming_threshold
    for relative in ORIGINALS:
        original = _gray(sample_dir, relative)
        copy = VARIANTS[variant](original)
        a, b = fingerprint(original), fingerprint(copy)
        whole = min(
            hamming(np.uint64(int(a["phash"], 16)), np.uint64(int(b["phash"], 16))),
            hamming(np.uint64(int(a["phash"], 16)), np.uint64(int(b["phash_mirror"], 16))),
        )
        assert whole <= threshold, (relative, variant, whole)
        score, mirrored = pair_score(verification_image(original), verification_image(copy))
        assert score >= DEFAULT_MIN_CORRELATION, (relative, variant, score)
        assert mirrored == (variant in ("mirrored", "all_four"))


def test_distinct_real_images_are_never_verified_as_the_same(sample_dir):
    images = {k: verification_image(v) for k, v in _sample_images(sample_dir).items()}
    merged = []
    for (pa, a), (pb, b) in itertools.combinations(images.items(), 2):
        score, _ = pair_score(a, b)
        if score >= DEFAULT_MIN_CORRELATION:
            merged.append((pa, pb))
    assert merged == [PLANTED_PAIR]  # 561 pairs checked, one of them the planted copy


def test_head_box_ignores_frames_text_and_background_level(sample_dir):
    gray = _gray(sample_dir, ORIGINALS[1])
    top, bottom, left, right = head_box(gray)
    framed = np.pad(gray, 40)
    framed[[0, -1], :] = 255  # a thin white frame around a wider canvas
    framed[:, [0, -1]] = 255
    cv2.putText(framed, "R", (5, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.5, 255, 1)
    framed = _brighter(framed, 10)
    t, b, lf, r = head_box(framed)
    assert abs((t - 40) - top) <= 3 and abs((b - 40) - bottom) <= 3
    assert abs((lf - 40) - left) <= 3 and abs((r - 40) - right) <= 3
    blank = np.zeros((50, 60), np.uint8)
    assert head_box(blank) == (0, 50, 0, 60)


def test_phash_is_a_64_bit_integer():
    rng = np.random.default_rng(0)
    value = phash(rng.integers(0, 256, (40, 30), dtype=np.uint8))
    assert 0 <= value < 2**64


def test_planted_variants_cluster_with_their_originals(sample_dir, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(sample_dir, source)
    planted = {}
    for relative in ORIGINALS:
        original = _gray(sample_dir, relative)
        for name, make in VARIANTS.items():
            target = source / relative.replace(".jpg", f"__{name}.png")
            cv2.imwrite(str(target), make(original))
            planted[target.relative_to(source).as_posix()] = relative
    ingested = ingest(source, out_dir=tmp_path / "raw")
    assert len(ingested.quarantine) == 4
    assert ingested.quarantine["source_path"].str.contains("planted_").all()
    manifest = ingested.manifest
    duplicates = find_duplicates(ingested.out_dir, manifest, IntegrityPolicy())
    # clusters by source path (ingestion renames folders to canonical split/label names)
    cluster_of = dict(zip(manifest["source_path"], duplicates.cluster_ids, strict=True))
    assert set(planted) | set(planted.values()) <= set(cluster_of)
    for copy, original in planted.items():
        assert cluster_of[copy] == cluster_of[original], copy
    # nothing else merges: one cluster per original (with its 5 copies) plus the planted pair
    sizes = np.bincount(duplicates.cluster_ids)
    assert sorted(sizes[sizes > 1].tolist()) == [2] + [1 + len(VARIANTS)] * len(ORIGINALS)
    assert cluster_of[PLANTED_PAIR[0]] == cluster_of[PLANTED_PAIR[1]]
    near = duplicates.pairs[duplicates.pairs["kind"] == "near"]
    assert (near["score"] >= DEFAULT_MIN_CORRELATION).all()


def test_verification_in_workers_decides_as_pair_score_one_pair_at_a_time(sample_dir, tmp_path):
    """verify_pairs (images read once, pairs scored in worker processes) gives the scores of
    the straightforward loop over pair_score, on planted copies and near misses."""
    near_misses = {
        # the same slice with a large bright lesion painted in: close, not the same picture
        "lesion": lambda g: cv2.circle(
            g.copy(), (g.shape[1] // 2, g.shape[0] // 2), min(g.shape) // 6, 255, -1
        ),
        # the top third replaced by the bottom third upside down: half the picture is shared
        "patched": lambda g: np.concatenate([g[-(g.shape[0] // 3) :][::-1], g[g.shape[0] // 3 :]]),
    }
    made = {"exact_png": lambda g: g, **VARIANTS, **near_misses}
    paths = []
    for k, relative in enumerate(ORIGINALS[:3]):
        original = _gray(sample_dir, relative)
        for name, make in {"original": lambda g: g, **made}.items():
            paths.append(f"{k}_{name}.png")
            cv2.imwrite(str(tmp_path / paths[-1]), make(original))
    pairs = np.array(list(itertools.combinations(range(len(paths)), 2)))
    first, second = pairs[:, 0], pairs[:, 1]

    images = [verification_image(load_gray(tmp_path / path)) for path in paths]
    expected = [pair_score(images[i], images[j]) for i, j in pairs]
    for workers in (1, 2):
        found = verify_pairs(tmp_path, paths, first, second, workers=workers)
        assert found["score"].tolist() == [score for score, _ in expected], workers
        assert found["mirrored"].tolist() == [mirrored for _, mirrored in expected], workers

    # the set has both answers: every planted copy verified, every near miss rejected
    same = dict(zip(map(tuple, pairs.tolist()), found["same"], strict=True))
    by_name = {path: k for k, path in enumerate(paths)}
    for k in range(3):
        original = by_name[f"{k}_original.png"]
        for name in ("exact_png", *VARIANTS):
            assert same[(original, by_name[f"{k}_{name}.png"])], (k, name)
        for name in near_misses:
            assert not same[(original, by_name[f"{k}_{name}.png"])], (k, name)


def test_images_read_once_give_what_each_phase_reads_for_itself(sample_dir):
    """read_images (each image decoded once, in workers) gives the verification images and the
    appearance features that verification and the appearance check compute on their own, and
    verify_pairs scores the same from them."""
    paths = sorted(p.relative_to(sample_dir).as_posix() for p in sample_dir.rglob("*.jpg"))[:12]
    grays = [load_gray(sample_dir / path) for path in paths]
    expected_images = np.stack([verification_image(gray) for gray in grays])
    expected_features = appearance_table(grays)
    for workers in (1, 2):
        read = read_images(sample_dir, paths, workers=workers)
        assert np.array_equal(read.verification, expected_images), workers
        pd.testing.assert_frame_equal(read.appearance, expected_features)
    pairs = np.array(list(itertools.combinations(range(len(paths)), 2)))
    from_disk = verify_pairs(sample_dir, paths, pairs[:, 0], pairs[:, 1], workers=1)
    given = verify_pairs(
        sample_dir, paths, pairs[:, 0], pairs[:, 1], workers=2, images=read.verification
    )
    pd.testing.assert_frame_equal(given, from_disk)
    with pytest.raises(ValueError, match="one verification image per path"):
        verify_pairs(sample_dir, paths, pairs[:, 0], pairs[:, 1], images=read.verification[:3])


def test_pearson_is_the_correlation_coefficient_and_leaves_its_inputs_alone():
    rng = np.random.default_rng(3)
    for shape in ((32, 32), (128, 128), (700,)):
        a = rng.integers(0, 256, shape).astype(np.float32)
        b = (0.5 * a + rng.normal(0, 20, shape)).astype(np.float32)
        a_before, b_before = a.copy(), b.copy()
        assert pearson(a, b) == pytest.approx(np.corrcoef(a.ravel(), b.ravel())[0, 1], abs=1e-12)
        assert np.array_equal(a, a_before) and np.array_equal(b, b_before)
    flat = np.full((32, 32), 7.0)
    assert pearson(flat, rng.random((32, 32))) == 0.0
