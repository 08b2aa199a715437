"""Connected components over duplicate edges."""

from __future__ import annotations

import numpy as np
import pytest

from braintumor.integrity.clusters import (
    connected_clusters,
    exact_duplicate_edges,
)


def test_components_follow_chains_and_ids_follow_first_member():
    # 0-3-5 is a chain, 1-4 a pair, 2 and 6 alone
    ids = connected_clusters(7, np.array([3, 4, 5]), np.array([0, 1, 3]))
    assert ids.tolist() == [0, 1, 2, 0, 1, 0, 3]


def test_no_edges_gives_singletons_and_empty_input_works():
    assert connected_clusters(3, np.array([]), np.array([])).tolist() == [0, 1, 2]
    assert connected_clusters(0, np.array([]), np.array([])).tolist() == []


def test_bad_edges_are_refused():
    with pytest.raises(ValueError, match="one index per edge"):
        connected_clusters(3, np.array([0, 1]), np.array([1]))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        connected_clusters(3, np.array([0]), np.array([3]))


def test_exact_duplicate_edges_link_each_copy_to_the_first():
    first, second = exact_duplicate_edges(["a", "b", "a", "c", "b", "a"])
    assert sorted(zip(first.tolist(), second.tolist(), strict=True)) == [(0, 2), (0, 5), (1, 4)]
