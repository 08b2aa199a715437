"""The audit's figures as a plain, JSON-ready dict (the HTML report renders the same dict)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from braintumor.constants import (
    DEFAULT_SOURCE_NAME,
    PROTOCOL_LEAVE_SOURCE_OUT,
    PROTOCOL_OFFICIAL,
    PROTOCOL_RESPLIT,
)
from braintumor.integrity.dedup import Duplicates
from braintumor.integrity.policy import IntegrityPolicy
from braintumor.integrity.shortcut import metadata_shortcut, shortcut_sentence
from braintumor.integrity.splits import KEPT, QUARANTINED, REDUNDANT, TESTING, TRAINING

# Pairs within this pHash distance are reported separately: the usual "near duplicate"
# threshold of perceptual-hash tools, which the data shows to be a poor test on MRI.
LOOSE_HASH_DISTANCE = 4


def _nested_counts(frame: pd.DataFrame, outer: str, inner: str) -> dict[str, dict[str, int]]:
    table = frame.groupby([outer, inner]).size()
    result: dict[str, dict[str, int]] = {}
    for (a, b), count in table.items():
        result.setdefault(str(a), {})[str(b)] = int(count)
    return result


def _counts(series: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in series.value_counts().sort_index().items()}


def exact_figures(manifest: pd.DataFrame) -> dict[str, int]:
    figures = {}
    for name, column in (("byte_identical", "sha256"), ("pixel_identical", "pixel_sha256")):
        if column not in manifest.columns:
            continue
        sizes = manifest.groupby(column).size()
        figures[f"{name}_groups"] = int((sizes > 1).sum())
        figures[f"{name}_files"] = int(sizes[sizes > 1].sum())
        figures[f"{name}_redundant"] = int((sizes[sizes > 1] - 1).sum())
    return figures


def near_figures(duplicates: Duplicates, policy: IntegrityPolicy) -> dict[str, Any]:
    candidates = duplicates.candidates
    loose = candidates[candidates["hash_distance"] <= LOOSE_HASH_DISTANCE]
    return {
        "hamming_threshold": policy.hamming_threshold,
        "min_correlation": policy.min_correlation,
        "candidate_pairs": len(candidates),
        "verified_pairs": int(candidates["same"].sum()),
        "rejected_pairs": int((~candidates["same"]).sum()),
        "mirrored_verified_pairs": int((candidates["same"] & candidates["mirrored"]).sum()),
        f"pairs_within_{LOOSE_HASH_DISTANCE}": {
            "pairs": len(loose),
            "same_picture": int(loose["same"].sum()),
            "share_same_picture": round(float(loose["same"].mean()), 4) if len(loose) else None,
        },
        "note": (
            "candidate pairs are distinct images (one per exact-duplicate group) within the "
            "Hamming threshold on the whole-image or head-crop pHash, mirrored or not; "
            "verified pairs scored at least min_correlation after head crop and alignment"
        ),
    }


def cluster_figures(
    manifest: pd.DataFrame, duplicates: Duplicates, resplit: pd.DataFrame
) -> dict[str, Any]:
    frame = manifest.assign(cluster_id=duplicates.cluster_ids)
    sizes = frame.groupby("cluster_id").size()
    multi = sizes[sizes > 1]
    in_clusters = frame[frame["cluster_id"].isin(multi.index)]
    redundant = resplit[resplit["status"] == REDUNDANT]
    per_cluster_class = in_clusters.groupby("cluster_id")["label"].agg(
        lambda labels: labels.iloc[0] if labels.nunique() == 1 else "mixed"
    )
    return {
        "clusters": len(multi),
        "images_in_clusters": int(multi.sum()),
        "redundant_images": int((multi - 1).sum()),
        "redundant_share": round(float((multi - 1).sum() / max(len(manifest), 1)), 4),
        "largest_cluster": int(multi.max()) if len(multi) else 0,
        "size_histogram": {str(k): int(v) for k, v in multi.value_counts().sort_index().items()},
        "clusters_by_class": _counts(per_cluster_class),
        "redundant_by_split_class": _nested_counts(redundant, "origin_split", "label"),
    }


def conflict_figures(manifest: pd.DataFrame, duplicates: Duplicates) -> dict[str, Any]:
    frame = manifest.assign(cluster_id=duplicates.cluster_ids)
    n_labels = frame.groupby("cluster_id")["label"].transform("nunique")
    conflicts = frame[n_labels > 1]
    listing = [
        {
            "cluster_id": int(cluster_id),
            "labels": _counts(members["label"]),
            "paths": members["path"].tolist(),
        }
        for cluster_id, members in conflicts.groupby("cluster_id")
    ]
    return {"clusters": len(listing), "images": len(conflicts), "list": listing}


def leakage_figures(manifest: pd.DataFrame, duplicates: Duplicates) -> dict[str, Any]:
    frame = manifest.assign(cluster_id=duplicates.cluster_ids)
    has_training = frame.groupby("cluster_id")["split"].agg(lambda s: bool((s == TRAINING).any()))
    has_testing = frame.groupby("cluster_id")["split"].agg(lambda s: bool((s == TESTING).any()))
    spanning = has_training & has_testing
    testing = frame[frame["split"] == TESTING]
    twin = testing["cluster_id"].map(has_training).astype(bool)
    by_class = {
        str(label): {"testing": len(rows), "with_training_twin": int(twin[rows.index].sum())}
        for label, rows in testing.groupby("label")
    }
    return {
        "clusters_spanning_training_and_testing": int(spanning.sum()),
        "testing_images": len(testing),
        "testing_with_training_twin": int(twin.sum()),
        "share_of_testing": round(float(twin.mean()), 4) if len(testing) else None,
        "by_class": by_class,
    }


def image_sources(manifest: pd.DataFrame) -> np.ndarray:
    """The source name per manifest row (the default name when the column is absent)."""
    if "source" not in manifest.columns:
        return np.full(len(manifest), DEFAULT_SOURCE_NAME, dtype=object)
    return manifest["source"].astype(str).to_numpy()


def source_figures(
    manifest: pd.DataFrame, duplicates: Duplicates, resplit: pd.DataFrame | None = None
) -> dict[str, Any]:
    """Copies across sources, from the duplicate clusters (which span sources).

    - `shared_images[a][b]`: images of source a with a copy (same cluster) in source b; on
      the diagonal, images of a with another copy in a itself.
    - `shared_pictures[a][b]`: clusters holding images of both a and b (a != b).
    - `unique_images[a]`: images of a without a copy in any other source.
    - `pairs_across_sources`: duplicate pairs whose two images come from different sources,
      by kind (pairs link each copy to one other, so they count links, not images).
    - `label_conflicts`: clusters spanning sources whose copies carry different labels.
    """
    sources = image_sources(manifest)
    names = sorted(set(sources))
    ids = duplicates.cluster_ids
    labels = manifest["label"].to_numpy()
    frame = pd.DataFrame({"cluster_id": ids, "source": sources, "label": labels})
    member = pd.crosstab(frame["cluster_id"], frame["source"]).reindex(columns=names)
    counts = member.to_numpy()  # clusters x sources: images of each source in each cluster
    present = counts > 0
    shared = counts.T @ present
    shared[np.diag_indices(len(names))] = (counts * (counts >= 2)).sum(axis=0)
    spans = present.sum(axis=1) > 1
    pictures = present[spans].T.astype(np.int64) @ present[spans]
    unique = (counts * ~spans[:, None]).sum(axis=0)

    pairs = duplicates.pairs
    first, second = sources[pairs["i"].to_numpy()], sources[pairs["j"].to_numpy()]
    across = pairs[first != second]
    near = across["kind"] == "near"
    pair_counts = {
        "exact": int((across["kind"] == "exact").sum()),
        "near": int(near.sum()),
        "near_mirrored": int((near & across["mirrored"].astype(bool)).sum()),
    }

    spanning_ids = member.index[spans]
    candidates = frame[frame["cluster_id"].isin(spanning_ids)]
    n_labels = candidates.groupby("cluster_id")["label"].nunique()
    conflicting = candidates[candidates["cluster_id"].isin(n_labels.index[n_labels > 1])]
    paths = manifest["path"].to_numpy()
    conflicts = [
        {
            "cluster_id": int(cluster_id),
            "labels_by_source": _nested_counts(members, "source", "label"),
            "paths": paths[members.index.to_numpy()].tolist(),
        }
        for cluster_id, members in conflicting.groupby("cluster_id")
    ]
    figures: dict[str, Any] = {
        "sources": names,
        "images_by_source_class": _nested_counts(frame, "source", "label"),
        "shared_images": {
            a: {b: int(shared[x, y]) for y, b in enumerate(names)} for x, a in enumerate(names)
        },
        "shared_pictures": {
            a: {b: int(pictures[x, y]) for y, b in enumerate(names) if b != a}
            for x, a in enumerate(names)
        },
        "unique_images": {a: int(unique[x]) for x, a in enumerate(names)},
        "clusters_spanning_sources": int(spans.sum()),
        "pairs_across_sources": pair_counts,
        "label_conflicts": {
            "clusters": len(conflicts),
            "images": len(conflicting),
            "list": conflicts,
        },
    }
    if resplit is not None and "source" in resplit.columns:
        kept = resplit[resplit["status"] == KEPT]
        figures["kept_by_source_split"] = _nested_counts(kept, "source", "split")
    return figures


def protocol_figures(splits: pd.DataFrame, holdout_source: str | None = None) -> dict[str, Any]:
    kept = splits[splits["status"] == KEPT]
    figures: dict[str, Any] = {
        "status": _counts(splits["status"]),
        "kept_by_split_class": _nested_counts(kept, "split", "label"),
        "kept_by_split": _counts(kept["split"]),
    }
    if (splits["protocol"] == PROTOCOL_OFFICIAL).all():
        testing = splits[splits["origin_split"] == TESTING]
        removed = testing["reason"].str.startswith("removed from Testing")
        figures["official"] = {
            "testing_images": len(testing),
            "removed_with_training_twin": int(removed.sum()),
            "removed_as_duplicates_within_testing": int(
                ((testing["status"] == REDUNDANT) & ~removed).sum()
            ),
            "quarantined": int((testing["status"] == QUARANTINED).sum()),
            "test_left": int(((testing["status"] == KEPT) & (testing["split"] == "test")).sum()),
            "test_left_by_class": _counts(
                testing[(testing["status"] == KEPT) & (testing["split"] == "test")]["label"]
            ),
        }
    if (splits["protocol"] == PROTOCOL_LEAVE_SOURCE_OUT).all() and holdout_source:
        held = splits[splits["source"] == holdout_source]
        removed = held["reason"].str.startswith("removed from held-out source")
        test = held[(held["status"] == KEPT) & (held["split"] == "test")]
        figures["leave_source_out"] = {
            "holdout_source": holdout_source,
            "holdout_images": len(held),
            "removed_with_copy_in_training_sources": int(removed.sum()),
            "removed_as_duplicates_within_holdout": int(
                ((held["status"] == REDUNDANT) & ~removed).sum()
            ),
            "quarantined": int((held["status"] == QUARANTINED).sum()),
            "test_left": len(test),
            "test_left_by_class": _counts(test["label"]),
            "training_sources": sorted(
                str(name) for name in splits["source"].unique() if name != holdout_source
            ),
        }
    return figures


def audit_figures(
    manifest: pd.DataFrame,
    duplicates: Duplicates,
    splits_by_protocol: dict[str, pd.DataFrame],
    policy: IntegrityPolicy,
) -> dict[str, Any]:
    resplit = splits_by_protocol[PROTOCOL_RESPLIT]
    shortcut = metadata_shortcut(manifest, seed=policy.seed)
    figures: dict[str, Any] = {
        "protocol": policy.protocol,
        "policy": policy.to_dict(),
        "images": {
            "total": len(manifest),
            "by_split_class": _nested_counts(manifest, "split", "label"),
        },
        "exact": exact_figures(manifest),
        "near": near_figures(duplicates, policy),
        "clusters": cluster_figures(manifest, duplicates, resplit),
        "label_conflicts": conflict_figures(manifest, duplicates),
        "leakage": leakage_figures(manifest, duplicates),
        "sources": source_figures(manifest, duplicates, resplit),
        "protocols": {
            name: protocol_figures(s, policy.holdout_source)
            for name, s in splits_by_protocol.items()
        },
        "shortcut": {**shortcut, "summary": shortcut_sentence(shortcut)},
    }
    return _plain(figures)


def _plain(value: Any) -> Any:
    """Numpy scalars to Python ones, recursively (json.dumps cannot write numpy ints)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
