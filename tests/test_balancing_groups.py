"""Balancing within appearance groups: the group says nothing about the class once weighted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from braintumor.preprocessing import PreprocessSpec
from braintumor.training.balancing import (
    BalancingError,
    balance,
    class_weights,
    group_class_weights,
)
from braintumor.training.dataset import DatasetError, load_split_arrays
from tests.training_helpers import sample_splits


def shortcut_split() -> tuple[np.ndarray, np.ndarray]:
    """Like the Kaggle data: T1 contrast is mostly tumours, T2 mostly "no tumour"."""
    t1 = np.repeat([0, 1, 2, 3], [300, 300, 20, 300])
    t2 = np.repeat([0, 1, 2, 3], [15, 15, 250, 10])
    y = np.concatenate([t1, t2])
    groups = np.array(["t1c"] * len(t1) + ["t2"] * len(t2))
    return y, groups


def weighted_shares(y, groups, weights, group) -> np.ndarray:
    members = groups == group
    totals = np.bincount(y[members], weights=weights[members], minlength=4)
    return totals / totals.sum()


def test_classes_are_balanced_within_every_group() -> None:
    y, groups = shortcut_split()
    weights = group_class_weights(y, groups, 4, max_weight=1000)
    for group in ("t1c", "t2"):
        np.testing.assert_allclose(weighted_shares(y, groups, weights, group), 0.25, rtol=1e-5)
    assert weights.mean() == pytest.approx(1.0)
    # Every group keeps its share of the total weight; with every class in every group the
    # classes come out balanced overall too.
    assert weights[groups == "t2"].sum() / weights.sum() == pytest.approx(290 / len(y), rel=1e-5)
    totals = np.bincount(y, weights=weights, minlength=4)
    np.testing.assert_allclose(totals / totals.sum(), 0.25, rtol=1e-5)
    # Plain class weights balance the classes but keep the shortcut inside the groups.
    plain = np.array([class_weights(y, 4)[c] for c in y])
    assert weighted_shares(y, groups, plain, "t2")[2] > 0.6


def test_weights_are_capped_and_one_group_is_class_weight() -> None:
    y, groups = shortcut_split()
    capped = group_class_weights(y, groups, 4, max_weight=5.0)
    raw = group_class_weights(y, groups, 4, max_weight=1000)
    assert capped.max() / capped.min() < raw.max() / raw.min()
    sizes = {"t1c": 920, "t2": 290}
    cells = {(g, c): ((groups == g) & (y == c)).sum() for g in sizes for c in range(4)}
    expected = np.array(
        [min(sizes[g] / (4 * cells[g, c]), 5.0) for g, c in zip(groups, y, strict=True)]
    )
    np.testing.assert_allclose(capped, expected / expected.mean(), rtol=1e-5)
    # A single group is scikit-learn's "balanced" class weighting.
    one = group_class_weights(y, np.zeros_like(y), 4, max_weight=1000)
    weights = class_weights(y, 4)
    np.testing.assert_allclose(one, [weights[c] for c in y], rtol=1e-5)


def test_balance_with_groups_and_its_errors() -> None:
    y, groups = shortcut_split()
    x = np.zeros((len(y), 4, 4, 1), np.uint8)
    result = balance(x, y, 4, "class_weight", groups=groups, group_max_weight=8.0)
    assert result.strategy == "class_weight_within_groups"
    np.testing.assert_allclose(result.sample_weight, group_class_weights(y, groups, 4, 8.0))
    assert result.x is x and result.y.tolist() == y.tolist()  # images and labels unchanged
    with pytest.raises(BalancingError, match="strategy class_weight"):
        balance(x, y, 4, "oversample", groups=groups)
    with pytest.raises(BalancingError, match="one group per image"):
        group_class_weights(y, groups[:-1], 4)
    with pytest.raises(BalancingError, match="max_weight"):
        group_class_weights(y, groups, 4, max_weight=0.5)
    # Without groups nothing changes.
    assert balance(x, y, 4, "class_weight").strategy == "class_weight"


def test_split_arrays_can_carry_a_group_column(sample_dir: Path) -> None:
    splits = sample_splits(sample_dir)
    splits["appearance_group"] = np.where(splits.index % 2 == 0, "t1c", "t2")
    spec = PreprocessSpec(image_size=16, channels=3)
    data = load_split_arrays(splits, sample_dir, spec, group_column="appearance_group")
    assert data.train.groups is not None and len(data.train.groups) == len(data.train)
    assert set(data.train.groups) <= {"t1c", "t2"}
    assert load_split_arrays(splits, sample_dir, spec).train.groups is None
    with pytest.raises(DatasetError, match="no group column 'look'"):
        load_split_arrays(splits, sample_dir, spec, group_column="look")
    splits.loc[splits[splits.status == "kept"].index[0], "appearance_group"] = None
    with pytest.raises(DatasetError, match="no value in the group column"):
        load_split_arrays(splits, sample_dir, spec, group_column="appearance_group")


def test_training_config_turns_on_balancing_within_appearance_groups():
    from pydantic import ValidationError

    from braintumor.training.config import BalancingConfig

    assert BalancingConfig().appearance_groups is False
    assert BalancingConfig(appearance_groups=True).group_max_weight == 10.0
    with pytest.raises(ValidationError, match="class_weight only"):
        BalancingConfig(appearance_groups=True, strategy="oversample")


def test_appearance_groups_of_training_arrays_use_the_audit_rule(sample_dir):
    from braintumor.integrity.appearance import GROUPS, appearance_table, sequence_group
    from braintumor.preprocessing import PreprocessSpec, load_and_preprocess
    from braintumor.training.trainer import appearance_groups

    spec = PreprocessSpec(image_size=96, channels=1)
    paths = [p for p in sorted(sample_dir.glob("*/*/*.jpg")) if "planted" not in p.name]
    x = np.stack([load_and_preprocess(p, spec) for p in paths])
    groups = appearance_groups(x)
    assert len(groups) == len(paths) and set(groups) <= set(GROUPS)
    expected = sequence_group(appearance_table([image[..., 0].astype(np.uint8) for image in x]))
    assert list(groups) == list(expected)
