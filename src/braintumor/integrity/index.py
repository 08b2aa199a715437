"""Near-duplicate search over 64-bit hashes without comparing all pairs: multi-index hashing.

The 64 bits are cut into `m` chunks. If two hashes differ in at most `d` bits, at least one
chunk differs in at most `d // m` bits (pigeonhole), so probing every chunk's table with all
keys within `d // m` bit flips finds every pair within `d`: the search is exact, not
approximate. Each chunk's table is a dense array of bucket offsets over the sorted items, so a
probe is two array gathers for all queries at once (numpy, no Python loop per item).
`m` is chosen per index size to balance probes (fewer, longer chunks) against bucket sizes.

Memory is O(n) for the items plus 2**bits offsets per chunk (bits <= 22); candidate pairs
(and a boolean occupancy table); candidate pairs are produced probe by probe and filtered
by their exact distance right away.
"""

from __future__ import annotations

from itertools import combinations
from math import comb

import numpy as np

HASH_BITS = 64


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise Hamming distance of two uint64 arrays."""
    return np.bitwise_count(np.bitwise_xor(a, b)).astype(np.int64)


def _chunk_bounds(n_chunks: int) -> list[tuple[int, int]]:
    """(shift, bits) of each chunk; the first chunks take the extra bits."""
    base, extra = divmod(HASH_BITS, n_chunks)
    bounds, shift = [], HASH_BITS
    for k in range(n_chunks):
        bits = base + (1 if k < extra else 0)
        shift -= bits
        bounds.append((shift, bits))
    return bounds


def _probes(bits: int, radius: int) -> int:
    return sum(comb(bits, k) for k in range(radius + 1))


def choose_chunks(n_items: int, max_distance: int) -> int:
    """Number of chunks minimising the estimated work: probes * n + expected bucket hits."""
    # At least 3 chunks keep each table <= 2**22 offsets; with more chunks than
    # max_distance + 1 the radius is 0 and more chunks only add probes.
    best, best_cost = 3, None
    for m in range(3, max(max_distance + 1, 3) + 1):
        bounds = _chunk_bounds(m)
        radius = max_distance // m
        cost = 0.0
        for _, bits in bounds:
            probes = _probes(bits, radius)
            cost += probes * n_items * (1.0 + n_items / 2.0**bits)
        if best_cost is None or cost < best_cost:
            best, best_cost = m, cost
    return best


def _flip_masks(bits: int, radius: int) -> np.ndarray:
    masks = [0]
    for k in range(1, radius + 1):
        for positions in combinations(range(bits), k):
            mask = 0
            for p in positions:
                mask |= 1 << p
            masks.append(mask)
    return np.array(masks, dtype=np.int64)


class HammingIndex:
    """Exact radius search over 64-bit hashes (multi-index hashing).

    Args:
        hashes: uint64 array of the indexed items.
        max_distance: the largest Hamming distance queries may ask for (fixes the chunking).
    """

    def __init__(self, hashes: np.ndarray, max_distance: int) -> None:
        if not 0 <= max_distance < HASH_BITS:
            raise ValueError(f"max_distance must be in [0, 63], not {max_distance}")
        self.hashes = np.ascontiguousarray(hashes, dtype=np.uint64).ravel()
        self.max_distance = int(max_distance)
        n = len(self.hashes)
        self.n_chunks = choose_chunks(max(n, 1), max_distance)
        self.radius = self.max_distance // self.n_chunks
        self._tables = []
        for shift, bits in _chunk_bounds(self.n_chunks):
            keys = self._keys(self.hashes, shift, bits)
            order = np.argsort(keys, kind="stable")
            offsets = np.zeros(2**bits + 1, dtype=np.int32 if n < 2**31 else np.int64)
            counts = np.bincount(keys, minlength=2**bits)
            np.cumsum(counts, out=offsets[1:])
            masks = _flip_masks(bits, self.radius)
            self._tables.append((shift, bits, order, offsets, counts > 0, masks))

    @staticmethod
    def _keys(hashes: np.ndarray, shift: int, bits: int) -> np.ndarray:
        mask = np.uint64((1 << bits) - 1)
        return ((hashes >> np.uint64(shift)) & mask).astype(np.int64)

    def __len__(self) -> int:
        return len(self.hashes)

    def query(
        self, queries: np.ndarray, max_distance: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All (query index, item index, distance) with distance <= max_distance.

        Each pair appears once, sorted by query index then item index.
        """
        d = self.max_distance if max_distance is None else int(max_distance)
        if d > self.max_distance:
            raise ValueError(f"this index was built for distances <= {self.max_distance}, not {d}")
        queries = np.ascontiguousarray(queries, dtype=np.uint64).ravel()
        found_q, found_i = [], []
        for shift, bits, order, offsets, occupied, masks in self._tables:
            qkeys = self._keys(queries, shift, bits)
            for mask in masks:
                probe = qkeys ^ mask
                # Most buckets are empty: a gather from a small boolean table skips them
                # (about 20x faster than gathering offsets for every query).
                hit = np.flatnonzero(occupied[probe])
                if hit.size == 0:
                    continue
                keys = probe[hit]
                lo = offsets[keys].astype(np.int64)
                counts = offsets[keys + 1] - lo
                total = int(counts.sum())
                q_idx = np.repeat(hit, counts)
                # position inside the bucket: running index minus the bucket's start in the run
                run_start = np.repeat(np.cumsum(counts) - counts, counts)
                items = order[np.repeat(lo, counts) + (np.arange(total) - run_start)]
                close = hamming(queries[q_idx], self.hashes[items]) <= d
                found_q.append(q_idx[close])
                found_i.append(items[close])
        if not found_q:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        q_all, i_all = np.concatenate(found_q), np.concatenate(found_i)
        keys = np.unique(q_all * max(len(self.hashes), 1) + i_all)
        q_idx, i_idx = np.divmod(keys, max(len(self.hashes), 1))
        return q_idx, i_idx, hamming(queries[q_idx], self.hashes[i_idx])


def pairs_within(
    hashes: np.ndarray, max_distance: int, mirror_hashes: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Unordered pairs (i < j) of items within `max_distance`, over one set of hashes.

    With `mirror_hashes` (the hash of each item's horizontal mirror), a pair also counts when
    one image is within the distance of the other's mirror. Returns (i, j, distance,
    mirrored) where distance is the smaller of the direct and mirrored distances and
    `mirrored` is True when the mirrored distance is strictly smaller.
    """
    hashes = np.ascontiguousarray(hashes, dtype=np.uint64).ravel()
    index = HammingIndex(hashes, max_distance)
    q, i, dist = index.query(hashes)
    keep = q < i
    found = {"i": [q[keep]], "j": [i[keep]], "d": [dist[keep]], "m": [np.zeros(keep.sum(), bool)]}
    if mirror_hashes is not None:
        mirror_hashes = np.ascontiguousarray(mirror_hashes, dtype=np.uint64).ravel()
        if mirror_hashes.shape != hashes.shape:
            raise ValueError("mirror_hashes must have one hash per item")
        q, i, dist = index.query(mirror_hashes)
        keep = q != i  # an image and its own mirror are not a pair
        a, b = np.minimum(q[keep], i[keep]), np.maximum(q[keep], i[keep])
        found["i"].append(a)
        found["j"].append(b)
        found["d"].append(dist[keep])
        found["m"].append(np.ones(keep.sum(), bool))
    i_all, j_all = np.concatenate(found["i"]), np.concatenate(found["j"])
    d_all, m_all = np.concatenate(found["d"]), np.concatenate(found["m"])
    if len(i_all) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, np.zeros(0, dtype=bool)
    n = len(hashes)
    # Smallest distance per pair; at equal distance the direct comparison wins.
    order = np.lexsort((m_all, d_all, i_all * n + j_all))
    key = (i_all * n + j_all)[order]
    first = np.ones(len(key), dtype=bool)
    first[1:] = key[1:] != key[:-1]
    pick = order[first]
    return i_all[pick], j_all[pick], d_all[pick], m_all[pick]
