"""From a manifest to duplicate clusters: exact groups, hash candidates, verification.

1. Exact duplicates: the same decoded pixels (`pixel_sha256`), whatever the file bytes.
2. Candidates: one image per exact group is searched in a multi-index over its whole-image
   and head-crop perceptual hashes, each also against the other images' mirrored hashes;
   pairs within `policy.hamming_threshold` bits in any of them are candidates.
3. Verification: each candidate pair is scored on pixels (`verify.pair_score`); pairs scoring
   at least `policy.min_correlation` are near duplicates.
4. Clusters: connected components of exact and near duplicates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from braintumor.integrity.clusters import connected_clusters, exact_duplicate_edges
from braintumor.integrity.hashing import hex_to_uint64
from braintumor.integrity.index import pairs_within
from braintumor.integrity.policy import IntegrityPolicy
from braintumor.integrity.verify import load_gray, verify_pairs

HASH_COLUMNS = ("phash", "phash_mirror", "phash_head", "phash_head_mirror")
EXACT, NEAR = "exact", "near"


class ManifestHashError(ValueError):
    """The manifest lacks the fingerprints the audit needs."""


@dataclass(frozen=True)
class Duplicates:
    """What `find_duplicates` learned about a manifest (rows in manifest order).

    Attributes:
        cluster_ids: cluster id per manifest row.
        pairs: every exact pair (to its group's first image) and every verified candidate:
            `i, j, kind (exact|near), hash_distance, hash (whole|head), mirrored, score, same`.
        candidates: all candidate pairs with their verification (`same` False: rejected).
    """

    cluster_ids: np.ndarray
    pairs: pd.DataFrame
    candidates: pd.DataFrame


def _hashes(manifest: pd.DataFrame) -> dict[str, np.ndarray]:
    missing = [c for c in ("pixel_sha256", *HASH_COLUMNS) if c not in manifest.columns]
    if missing:
        raise ManifestHashError(
            f"the manifest lacks the fingerprint columns {missing}: re-run "
            "`braintumor data ingest SOURCE` to compute them"
        )
    return {column: hex_to_uint64(manifest[column]) for column in HASH_COLUMNS}


def candidate_pairs(hashes: dict[str, np.ndarray], max_distance: int) -> pd.DataFrame:
    """Pairs (i < j) within `max_distance` on the whole-image or head-crop hashes."""
    found = []
    for name, direct, mirror in (
        ("whole", hashes["phash"], hashes["phash_mirror"]),
        ("head", hashes["phash_head"], hashes["phash_head_mirror"]),
    ):
        i, j, distance, mirrored = pairs_within(direct, max_distance, mirror)
        found.append(
            pd.DataFrame(
                {"i": i, "j": j, "hash_distance": distance, "hash": name, "hash_mirrored": mirrored}
            )
        )
    pairs = pd.concat(found, ignore_index=True)
    # One row per pair, from the hash that put the two closest.
    pairs = pairs.sort_values(["i", "j", "hash_distance", "hash"]).drop_duplicates(["i", "j"])
    return pairs.reset_index(drop=True)


def find_duplicates(
    data_root: Path,
    manifest: pd.DataFrame,
    policy: IntegrityPolicy | None = None,
    loader: Callable[[Path], np.ndarray] = load_gray,
    progress: Callable[[int, int], None] | None = None,
    images: np.ndarray | None = None,
) -> Duplicates:
    """Exact and verified near duplicates of the manifest's images, and their clusters.

    `images`: the verification image of each manifest row (`integrity.images.read_images`),
    when the caller has read them already; None reads those in candidate pairs.
    """
    policy = policy or IntegrityPolicy()
    manifest = manifest.reset_index(drop=True)
    hashes = _hashes(manifest)
    exact_i, exact_j = exact_duplicate_edges(manifest["pixel_sha256"])
    # Search one image per exact group: its copies have the same pixels, hence hashes.
    unique_rows = np.flatnonzero(~manifest["pixel_sha256"].duplicated().to_numpy())
    candidates = candidate_pairs(
        {name: values[unique_rows] for name, values in hashes.items()}, policy.hamming_threshold
    )
    candidates["i"] = unique_rows[candidates["i"].to_numpy()]
    candidates["j"] = unique_rows[candidates["j"].to_numpy()]
    verified = verify_pairs(
        data_root,
        manifest["path"].tolist(),
        candidates["i"].to_numpy(),
        candidates["j"].to_numpy(),
        policy.min_correlation,
        loader=loader,
        progress=progress,
        images=images,
    )
    candidates = candidates.assign(
        score=verified["score"].to_numpy(),
        mirrored=verified["mirrored"].to_numpy(),
        same=verified["same"].to_numpy(),
    )
    near = candidates[candidates["same"]]
    exact = pd.DataFrame(
        {
            "i": exact_i,
            "j": exact_j,
            "hash_distance": 0,
            "hash": "pixels",
            "hash_mirrored": False,
            "score": 1.0,
            "mirrored": False,
            "same": True,
        }
    )
    pairs = pd.concat([exact.assign(kind=EXACT), near.assign(kind=NEAR)], ignore_index=True)
    cluster_ids = connected_clusters(len(manifest), pairs["i"].to_numpy(), pairs["j"].to_numpy())
    return Duplicates(cluster_ids=cluster_ids, pairs=pairs, candidates=candidates)
