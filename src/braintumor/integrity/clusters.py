"""Duplicate clusters: connected components of the "same picture" graph.

Edges come from exact duplicates (same decoded pixels) and verified near duplicates. Cluster
ids are stable for a given manifest order: clusters are numbered by their first member, so
re-running the audit on the same data gives the same ids.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def connected_clusters(n_items: int, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Cluster id per item (0..k-1, numbered by each cluster's lowest item index)."""
    first, second = np.asarray(first, dtype=np.int64), np.asarray(second, dtype=np.int64)
    if first.shape != second.shape:
        raise ValueError("first and second must hold one index per edge")
    if n_items == 0:
        return np.zeros(0, dtype=np.int64)
    if len(first) and (
        min(first.min(), second.min()) < 0 or max(first.max(), second.max()) >= n_items
    ):
        raise ValueError(f"edge indices must lie in [0, {n_items})")
    graph = coo_matrix((np.ones(len(first), dtype=np.int8), (first, second)), shape=(n_items,) * 2)
    _, labels = connected_components(graph, directed=False)
    # Renumber by first appearance so ids do not depend on scipy's internal order.
    _, first_seen = np.unique(labels, return_index=True)
    rank = np.empty(len(first_seen), dtype=np.int64)
    rank[np.argsort(first_seen)] = np.arange(len(first_seen))
    return rank[labels]


def exact_duplicate_edges(keys: pd.Series | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges linking every item to the first item with the same key (e.g. pixel_sha256)."""
    codes, _ = pd.factorize(pd.Series(np.asarray(keys)), sort=False)
    order = np.arange(len(codes))
    first_of_code = pd.Series(order).groupby(codes).transform("min").to_numpy()
    linked = first_of_code != order
    return first_of_code[linked], order[linked]
