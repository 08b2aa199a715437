"""Leakage-free splits: every duplicate cluster lies in one split, classes stay stratified.

`make_splits(manifest, clusters, policy)` returns one row per manifest image:

| column | meaning |
|---|---|
| path, label, source | from the manifest (`source`: the batch's name, default kaggle) |
| origin_split | the source's own split: training, testing or unsplit |
| cluster_id, cluster_size | duplicate cluster (a unique image is a cluster of one) |
| split | train, val, test, or none (quarantined) |
| status | kept (use it), redundant (a copy of a kept image), quarantined (set aside) |
| reason | why, in words a person can check |
| protocol | the evaluation protocol that produced the split |

Protocols:
- `resplit`: clusters are dealt into train/val/test, stratified by class.
- `official`: the source's Testing images form the test split, minus every one with a copy
  in Training; the rest is split into train and val.
- `leave-source-out`: the images of `policy.holdout_source` form the test split, minus every
  one with a copy in another source; the other sources are split into train and val.

Training uses rows with status == "kept" (split train/val/test). Redundant rows carry their
cluster's split, so no copy of a test image is ever in train even if someone uses them.
Clusters are found over the whole manifest, whatever source each image came from, so a copy
of a test image from another source is in the test split too.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from braintumor.constants import (
    DEFAULT_SOURCE_NAME,
    PROTOCOL_LEAVE_SOURCE_OUT,
    PROTOCOL_OFFICIAL,
    PROTOCOL_RESPLIT,
    TEST,
    TRAIN,
    UNSPLIT,
    VAL,
)
from braintumor.integrity.policy import IntegrityPolicy

KEPT, REDUNDANT, QUARANTINED = "kept", "redundant", "quarantined"
NONE_SPLIT = "none"
TRAINING, TESTING = "training", "testing"

SPLIT_COLUMNS: tuple[str, ...] = (
    "path",
    "label",
    "source",
    "origin_split",
    "cluster_id",
    "cluster_size",
    "split",
    "status",
    "reason",
    "protocol",
)


class SplitError(ValueError):
    """The manifest and clusters cannot be split as asked; the message says what to change."""


def _cluster_series(manifest: pd.DataFrame, clusters) -> pd.Series:
    """Cluster id per manifest row, whatever form `clusters` came in."""
    if isinstance(clusters, pd.DataFrame):
        if not {"path", "cluster_id"} <= set(clusters.columns):
            raise SplitError("a clusters table needs the columns path and cluster_id")
        mapping = clusters.drop_duplicates("path").set_index("path")["cluster_id"]
        ids = manifest["path"].map(mapping)
        if ids.isna().any():
            missing = manifest.loc[ids.isna(), "path"].head(3).tolist()
            raise SplitError(f"no cluster id for {ids.isna().sum()} images, e.g. {missing}")
        return pd.Series(ids.to_numpy(), index=manifest.index)
    if isinstance(clusters, pd.Series):
        ids = clusters.reindex(manifest.index)
    else:
        values = np.asarray(clusters).ravel()
        if len(values) != len(manifest):
            raise SplitError(
                f"clusters must give one cluster id per manifest row "
                f"({len(values)} ids for {len(manifest)} rows)"
            )
        ids = pd.Series(values, index=manifest.index)
    if ids.isna().any():
        raise SplitError("clusters must give one cluster id per manifest row")
    return ids


def _choose_representatives(frame: pd.DataFrame, held_out: pd.Series | None) -> pd.Series:
    """Per cluster, the path kept: an image that is not held out for testing (official,
    leave-source-out), then the one with most pixels, then by path."""
    ranked = frame.assign(
        _pixels=-(frame["width"].astype(np.int64) * frame["height"].astype(np.int64))
        if {"width", "height"} <= set(frame.columns)
        else 0,
        _held_out=held_out.reindex(frame.index) if held_out is not None else False,
    ).sort_values(["cluster_id", "_held_out", "_pixels", "path"])
    return ranked.groupby("cluster_id", sort=False)["path"].first()


def _conflicts(frame: pd.DataFrame, policy: IntegrityPolicy) -> pd.Series:
    """Reason per quarantined row (label conflicts), empty string for the others."""
    reasons = pd.Series("", index=frame.index, dtype=object)
    n_labels = frame.groupby("cluster_id")["label"].transform("nunique")
    for cluster_id, members in frame[n_labels > 1].groupby("cluster_id"):
        counts = members["label"].value_counts()
        labels = "+".join(sorted(counts.index))
        conflict = f"label conflict: the same picture is labelled {labels} (cluster {cluster_id})"
        top = counts[counts == counts.max()]
        if policy.cross_class == "majority" and len(top) == 1:
            losers = members.index[members["label"] != top.index[0]]
            reasons[losers] = conflict + f"; kept the majority label {top.index[0]}"
        else:
            reasons[members.index] = conflict
    return reasons


def _grouped_stratified(
    units: pd.DataFrame, fractions: dict[str, float], seed: int
) -> dict[int, str]:
    """Assign clusters (`cluster_id, label, size`) to splits, class by class.

    Within a class, clusters are shuffled with the seed (in an order fixed by their first
    path, so the result does not depend on the manifest's row order) and dealt out until each
    split holds its share of the class's images; the rest go to train.
    """
    assignment: dict[int, str] = {}
    for label, group in units.groupby("label", sort=True):
        group = group.sort_values("first_path")
        rng = np.random.default_rng([seed, zlib.crc32(str(label).encode())])
        order = rng.permutation(len(group))
        total = int(group["size"].sum())
        targets = {name: round(share * total) for name, share in fractions.items()}
        filled = dict.fromkeys(fractions, 0)
        for position in order:
            row = group.iloc[position]
            target_split = next((name for name in fractions if filled[name] < targets[name]), TRAIN)
            if target_split != TRAIN:
                filled[target_split] += int(row["size"])
            assignment[int(row["cluster_id"])] = target_split
    return assignment


def make_splits(
    manifest: pd.DataFrame, clusters, policy: IntegrityPolicy | None = None
) -> pd.DataFrame:
    """The splits table (see the module docstring) for `manifest` and its duplicate clusters.

    Args:
        manifest: rows with at least `path, split, label` (width/height pick the largest copy
            of a picture as its representative).
        clusters: cluster id per manifest row: a Series aligned with the manifest's index,
            an array in row order, or a table with columns `path, cluster_id`.
        policy: protocol, fractions, seed and what to do with label conflicts.
    """
    policy = policy or IntegrityPolicy()
    missing = {"path", "split", "label"} - set(manifest.columns)
    if missing:
        raise SplitError(f"the manifest lacks the columns {sorted(missing)}")
    if manifest["path"].duplicated().any():
        raise SplitError("the manifest lists a path twice; re-run ingestion")
    frame = manifest.copy()
    if "source" not in frame.columns:
        frame["source"] = DEFAULT_SOURCE_NAME
    frame["cluster_id"] = _cluster_series(manifest, clusters).astype(np.int64)
    frame["origin_split"] = frame["split"].astype(str)
    frame["cluster_size"] = frame.groupby("cluster_id")["path"].transform("size").astype(np.int64)
    held_out = held_out_rows(frame, policy)

    frame["reason"] = _conflicts(frame, policy)
    quarantined = frame["reason"] != ""
    frame["status"] = np.where(quarantined, QUARANTINED, KEPT)
    frame["split"] = NONE_SPLIT

    usable = frame[~quarantined]
    representatives = _choose_representatives(usable, held_out)
    is_representative = (
        usable["path"].to_numpy() == usable["cluster_id"].map(representatives).to_numpy()
    )
    if policy.keep_one_per_cluster:
        copies = usable.index[~is_representative]
        frame.loc[copies, "status"] = REDUNDANT
        _set_reasons(
            frame, copies, lambda row: f"same picture as {representatives[row.cluster_id]}"
        )
    kept = frame[frame["status"] == KEPT]
    _set_reasons(
        frame,
        kept.index,
        lambda row: (
            "unique"
            if row.cluster_size == 1
            else f"representative of cluster {row.cluster_id} ({row.cluster_size} images)"
        ),
    )

    units = (
        frame[frame["status"] == KEPT]
        .groupby("cluster_id")
        .agg(label=("label", "first"), size=("path", "size"), first_path=("path", "min"))
        .reset_index()
    )
    if held_out is not None:
        assignment = _held_out_assignment(frame, held_out, units, policy)
    else:
        fractions = {TEST: policy.test_fraction, VAL: policy.val_fraction}
        assignment = _grouped_stratified(units, fractions, policy.seed)
    usable_rows = frame["status"] != QUARANTINED
    frame.loc[usable_rows, "split"] = frame.loc[usable_rows, "cluster_id"].map(assignment)
    # A cluster whose kept image went elsewhere (none here) would leave NaN: fail loudly.
    if frame.loc[usable_rows, "split"].isna().any():
        raise AssertionError("a cluster without a kept image was not assigned a split")
    if held_out is not None:
        leaked = usable_rows & held_out & (frame["split"] != TEST)
        frame.loc[leaked, "status"] = REDUNDANT
        where = (
            "Testing"
            if policy.protocol == PROTOCOL_OFFICIAL
            else f"held-out source {policy.holdout_source}"
        )
        _set_reasons(
            frame,
            frame.index[leaked],
            lambda row: (
                f"removed from {where}: same picture as {representatives[row.cluster_id]}"
                " in the training pool"
            ),
        )
    frame["protocol"] = policy.protocol
    return frame.loc[:, list(SPLIT_COLUMNS)].sort_values("path").reset_index(drop=True)


def _set_reasons(frame: pd.DataFrame, index: pd.Index, text: Callable[[Any], str]) -> None:
    """Write `text(row)` as the reason of the rows in `index` (a no-op when it is empty)."""
    if len(index):
        frame.loc[index, "reason"] = [text(row) for row in frame.loc[index].itertuples()]


def held_out_rows(frame: pd.DataFrame, policy: IntegrityPolicy) -> pd.Series | None:
    """The rows the protocol tests on (official: Testing; leave-source-out: the held-out
    source), or None for resplit; raises when the manifest has none of them."""
    if policy.protocol == PROTOCOL_OFFICIAL:
        rows = frame["origin_split"] == TESTING
        if not rows.any():
            raise SplitError(
                "protocol 'official' needs the source's Testing split, but no image comes "
                "from one; use protocol 'resplit'"
            )
        return rows
    if policy.protocol == PROTOCOL_LEAVE_SOURCE_OUT:
        sources = sorted(frame["source"].astype(str).unique())
        rows = frame["source"].astype(str) == policy.holdout_source
        if not rows.any():
            raise SplitError(
                f"no image comes from the held-out source {policy.holdout_source!r}; "
                f"the sources are {', '.join(sources)} (braintumor data sources)"
            )
        if rows.all():
            raise SplitError(
                f"every image comes from {policy.holdout_source!r}: leave-source-out needs "
                "another source to train on (braintumor data add)"
            )
        return rows
    return None


def _held_out_assignment(
    frame: pd.DataFrame, held_out: pd.Series, units: pd.DataFrame, policy: IntegrityPolicy
) -> dict[int, str]:
    """Clusters made only of held-out images form the test split; the rest are split into
    train and val."""
    usable = frame["status"] != QUARANTINED
    only_held_out = held_out[usable].groupby(frame.loc[usable, "cluster_id"]).all()
    test_ids = set(only_held_out.index[only_held_out])
    assignment = dict.fromkeys((int(c) for c in test_ids), TEST)
    pool = units[~units["cluster_id"].isin(test_ids)]
    assignment.update(_grouped_stratified(pool, {VAL: policy.val_fraction}, policy.seed))
    return assignment


def trained_paths(splits: pd.DataFrame) -> set[str]:
    """The images a model of this splits table learnt from or was selected and calibrated on
    (train and val, every status but quarantined: a redundant copy is the same picture)."""
    used = splits["split"].isin([TRAIN, VAL]) & (splits["status"] != QUARANTINED)
    return set(splits.loc[used, "path"].astype(str))


def unseen_by(splits: pd.DataFrame, paths: Sequence[str], seen: set[str]) -> np.ndarray:
    """Mask over `paths` (images of `splits`): True where neither the image nor any copy of it
    (its duplicate cluster in `splits`) is in `seen`, e.g. another model's `trained_paths`."""
    cluster_of = splits.drop_duplicates("path").set_index("path")["cluster_id"]
    seen_clusters = set(cluster_of.reindex(sorted(seen)).dropna().astype(np.int64))
    clusters = cluster_of.reindex(list(paths))
    if clusters.isna().any():
        missing = [p for p, c in zip(paths, clusters, strict=True) if pd.isna(c)][:3]
        raise SplitError(f"paths not in the splits table, e.g. {missing}")
    in_seen = np.isin(np.asarray(paths, dtype=object), np.asarray(sorted(seen), dtype=object))
    return ~(clusters.astype(np.int64).isin(seen_clusters).to_numpy() | in_seen)


def split_counts(splits: pd.DataFrame) -> pd.DataFrame:
    """Images per split and class among the kept rows (what training will see)."""
    kept = splits[splits["status"] == KEPT]
    table = pd.crosstab(kept["label"], kept["split"])
    return table.reindex(columns=[c for c in (TRAIN, VAL, TEST) if c in table.columns])


__all__ = [
    "KEPT",
    "NONE_SPLIT",
    "PROTOCOL_OFFICIAL",
    "PROTOCOL_RESPLIT",
    "QUARANTINED",
    "REDUNDANT",
    "SPLIT_COLUMNS",
    "UNSPLIT",
    "IntegrityPolicy",
    "SplitError",
    "held_out_rows",
    "make_splits",
    "split_counts",
    "trained_paths",
    "unseen_by",
]
