"""Multi-index Hamming search: exact against brute force, mirrored matches, planted pairs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from braintumor.integrity.index import (
    HammingIndex,
    choose_chunks,
    hamming,
    pairs_within,
)


def brute_force_pairs(
    hashes: np.ndarray, max_distance: int, mirror_hashes: np.ndarray | None = None
) -> set[tuple[int, int]]:
    """The reference: every pair, compared one by one (O(n^2))."""
    hashes = np.ascontiguousarray(hashes, dtype=np.uint64).ravel()
    result = set()
    for a in range(len(hashes)):
        direct = hamming(hashes[a], hashes)
        close = set(np.flatnonzero(direct <= max_distance).tolist())
        if mirror_hashes is not None:
            mirrored = hamming(np.uint64(mirror_hashes[a]), hashes)
            close |= set(np.flatnonzero(mirrored <= max_distance).tolist())
        result |= {(min(a, b), max(a, b)) for b in close if b != a}
    return result


def _flip(value: np.uint64, bits: list[int]) -> np.uint64:
    mask = 0
    for b in bits:
        mask |= 1 << b
    return np.uint64(int(value) ^ mask)


def _planted(n: int, n_pairs: int, max_flips: int, seed: int) -> tuple[np.ndarray, set]:
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**64 - 1, size=n, dtype=np.uint64, endpoint=True)
    sources = rng.choice(n, n_pairs, replace=False)
    targets = rng.choice(np.setdiff1d(np.arange(n), sources), n_pairs, replace=False)
    for s, t in zip(sources, targets, strict=True):
        flips = rng.choice(64, int(rng.integers(0, max_flips + 1)), replace=False).tolist()
        hashes[t] = _flip(hashes[s], flips)
    return hashes, {(min(s, t), max(s, t)) for s, t in zip(sources, targets, strict=True)}


def test_hamming_counts_differing_bits():
    a = np.array([0, 0xFF, 2**64 - 1], dtype=np.uint64)
    b = np.array([0, 0x0F, 0], dtype=np.uint64)
    assert hamming(a, b).tolist() == [0, 4, 64]


@pytest.mark.parametrize("max_distance", [0, 1, 3, 8, 12])
def test_pairs_within_equals_brute_force(max_distance):
    rng = np.random.default_rng(max_distance)
    hashes, _ = _planted(400, 120, max_distance + 2, seed=max_distance)
    mirrors = rng.integers(0, 2**63, size=len(hashes), dtype=np.uint64)
    mirrors[:40] = hashes[200:240] ^ np.uint64(0b101)  # planted mirrored matches
    i, j, distance, mirrored = pairs_within(hashes, max_distance, mirrors)
    found = set(zip(i.tolist(), j.tolist(), strict=True))
    assert found == brute_force_pairs(hashes, max_distance, mirrors)
    assert len(found) > 0 and (i < j).all()
    direct = hamming(hashes[i], hashes[j])
    assert (distance <= direct).all() and (distance <= max_distance).all()
    # The reported distance is the smaller of the direct and the two mirrored comparisons.
    best_mirror = np.minimum(hamming(mirrors[i], hashes[j]), hamming(hashes[i], mirrors[j]))
    assert (distance == np.minimum(direct, best_mirror)).all()
    assert (mirrored == (best_mirror < direct)).all()


def test_an_image_is_not_paired_with_its_own_mirror():
    hashes = np.array([0x1234, 0xFFFF0000], dtype=np.uint64)
    i, _, _, _ = pairs_within(hashes, 4, mirror_hashes=hashes.copy())
    assert len(i) == 0


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(0, 2**64 - 1), min_size=0, max_size=60),
    st.integers(0, 10),
    st.integers(0, 2**32),
)
def test_property_index_is_exact(values, max_distance, seed):
    rng = np.random.default_rng(seed)
    hashes = np.array(values, dtype=np.uint64)
    if len(hashes):  # add close neighbours so that pairs exist
        extra = np.array(
            [_flip(h, rng.choice(64, max_distance, replace=False).tolist()) for h in hashes[:10]],
            dtype=np.uint64,
        )
        hashes = np.concatenate([hashes, extra])
    i, j, _, _ = pairs_within(hashes, max_distance)
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == brute_force_pairs(hashes, max_distance)


def test_query_returns_each_pair_once_with_its_distance():
    hashes = np.array([0b0000, 0b0001, 0b0011, 0b1111_0000], dtype=np.uint64)
    index = HammingIndex(hashes, max_distance=2)
    q, i, d = index.query(np.array([0b0000], dtype=np.uint64))
    assert list(zip(q.tolist(), i.tolist(), d.tolist(), strict=True)) == [
        (0, 0, 0),
        (0, 1, 1),
        (0, 2, 2),
    ]
    with pytest.raises(ValueError, match="built for distances <= 2"):
        index.query(hashes, max_distance=3)
    with pytest.raises(ValueError, match=r"\[0, 63\]"):
        HammingIndex(hashes, max_distance=64)


def test_chunking_keeps_tables_small_and_search_exact():
    for n in (10, 3_000, 100_000, 1_000_000):
        for d in (0, 4, 8, 10):
            m = choose_chunks(n, d)
            assert m >= 3  # chunks of at most 22 bits
            assert m <= max(d + 1, 3)


def test_planted_near_duplicates_are_all_found_among_20k():
    hashes, planted = _planted(20_000, 2_000, 8, seed=7)
    i, j, _, _ = pairs_within(hashes, 8)
    found = set(zip(i.tolist(), j.tolist(), strict=True))
    assert planted <= found
    # random 64-bit hashes are almost never within 8 bits of each other
    assert len(found - planted) < 10
