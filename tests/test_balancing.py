"""Balancing strategies change the class distribution or the weights as specified."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from sklearn.utils.class_weight import compute_class_weight

from braintumor.training.balancing import (
    BalancingError,
    balance,
    class_weights,
    make_loss,
    oversample_indices,
    smote,
)

COUNTS = (90, 93, 50, 60)  # like the dataset: "notumor" is the minority


def labels() -> np.ndarray:
    return np.repeat(np.arange(4), COUNTS)


def images(y: np.ndarray, size: int = 16) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = (y[:, None, None, None] * 60).astype(np.float32)
    noise = rng.normal(0, 10, (len(y), size, size, 1))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def test_class_weights_are_scikit_learns_balanced_weights() -> None:
    y = labels()
    expected = compute_class_weight("balanced", classes=np.arange(4), y=y)
    got = class_weights(y, 4)
    np.testing.assert_allclose([got[i] for i in range(4)], expected)
    result = balance(images(y), y, 4, "class_weight")
    assert result.sample_weight is not None
    # Every class carries the same total weight; the distribution itself is unchanged.
    totals = [result.sample_weight[y == c].sum() for c in range(4)]
    np.testing.assert_allclose(totals, len(y) / 4, rtol=1e-5)
    np.testing.assert_array_equal(result.class_counts(4), COUNTS)


def test_oversample_reaches_the_target_ratio_with_real_images_only() -> None:
    y = labels()
    x = images(y)
    for ratio in (1.0, 0.85):
        result = balance(x, y, 4, "oversample", target_ratio=ratio, seed=3)
        counts = result.class_counts(4)
        goal = round(ratio * max(COUNTS))
        np.testing.assert_array_equal(counts, np.maximum(COUNTS, goal))
        assert result.sample_weight is None
    index = oversample_indices(y, 4, 1.0, seed=3)
    assert set(range(len(y))) <= set(index.tolist())  # every original is kept
    np.testing.assert_array_equal(index, oversample_indices(y, 4, 1.0, seed=3))


def test_smote_synthesises_interpolations_between_same_class_neighbours() -> None:
    y = labels()
    x = images(y)
    new_x, new_y = smote(x, y, 4, target_ratio=0.85, neighbors=5, search_size=8, seed=1)
    counts = np.bincount(new_y, minlength=4)
    np.testing.assert_array_equal(counts, np.maximum(COUNTS, round(0.85 * 93)))
    np.testing.assert_array_equal(new_x[: len(x)], x)  # originals first, untouched
    synthetic, synthetic_y = new_x[len(x) :], new_y[len(x) :]
    assert set(synthetic_y.tolist()) == {2, 3}
    for label in (2, 3):
        originals = x[y == label].astype(np.float32)
        made = synthetic[synthetic_y == label].astype(np.float32)
        # Interpolations stay inside the class's pixel range, and are new images.
        assert made.min() >= originals.min() - 1 and made.max() <= originals.max() + 1
        assert not any((made[0] == o).all() for o in originals)


def test_strategy_none_and_errors() -> None:
    y = labels()
    result = balance(images(y), y, 4, "none")
    assert result.sample_weight is None and len(result.y) == len(y)
    with pytest.raises(BalancingError, match="unknown balancing strategy"):
        balance(images(y), y, 4, "undersample")
    with pytest.raises(BalancingError, match="target_ratio"):
        oversample_indices(y, 4, 1.5)
    lonely = np.array([0, 0, 0, 1])
    with pytest.raises(BalancingError, match="at least 2 images"):
        smote(images(lonely), lonely, 2)


def test_focal_loss_is_cross_entropy_at_gamma_zero_and_down_weights_easy_images() -> None:
    rng = np.random.default_rng(0)
    y = np.eye(4, dtype="float32")[rng.integers(0, 4, 32)]
    p = rng.dirichlet(np.ones(4), 32).astype("float32")
    cross_entropy = float(make_loss()(y, p))
    focal_0 = float(make_loss(focal=True, gamma=0.0, alpha=1.0)(y, p))
    assert focal_0 == pytest.approx(cross_entropy, rel=1e-5)
    reference = float(keras.losses.CategoricalCrossentropy()(y, p))
    assert cross_entropy == pytest.approx(reference)
    easy = np.array([[0.95, 0.05 / 3, 0.05 / 3, 0.05 / 3]], "float32")
    hard = np.array([[0.3, 0.7 / 3, 0.7 / 3, 0.7 / 3]], "float32")
    target = np.array([[1, 0, 0, 0]], "float32")
    focal = make_loss(focal=True, gamma=2.0, alpha=0.25)
    ratio_focal = float(focal(target, easy)) / float(focal(target, hard))
    ratio_ce = float(make_loss()(target, easy)) / float(make_loss()(target, hard))
    assert ratio_focal < 0.1 * ratio_ce
