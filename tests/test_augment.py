"""Augmentation: seeded, in range, and each transformation does what it says."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from braintumor.training.augment import AugmentSpec, augment_batch

OFF = AugmentSpec(
    flip_horizontal=False,
    flip_vertical=False,
    rotation_degrees=0,
    zoom=0,
    translate=0,
    brightness=0,
    contrast=0,
)
SEED = tf.constant([7, 3], tf.int64)


def batch(n: int = 6, size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.uniform(20, 200, (n, size, size, 1)).astype("float32")
    x[:, :, : size // 4] = 0  # a dark left band, to see flips and shifts
    return x


def run(spec: AugmentSpec, x: np.ndarray, seed=SEED) -> np.ndarray:
    return augment_batch(tf.constant(x), seed, spec).numpy()


def test_all_off_is_the_identity() -> None:
    x = batch()
    np.testing.assert_array_equal(run(OFF, x), x)


def test_same_seed_same_result_other_seed_other_result() -> None:
    x = batch()
    spec = AugmentSpec(gamma=0.3, noise_std=0.05, blur_probability=0.5, resolution_probability=0.5)
    np.testing.assert_array_equal(run(spec, x), run(spec, x))
    assert not np.array_equal(run(spec, x), run(spec, x, tf.constant([7, 4], tf.int64)))


def test_output_stays_in_pixel_range_and_shape() -> None:
    x = batch()
    x[0] = 255.0
    strong = AugmentSpec(
        rotation_degrees=45, zoom=0.3, brightness=0.5, contrast=0.5, gamma=0.5, noise_std=0.2
    )
    out = run(strong, x)
    assert out.shape == x.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 255.0


def test_horizontal_flip_mirrors_some_images_exactly() -> None:
    x = batch(16)
    out = run(dataclasses.replace(OFF, flip_horizontal=True), x)
    flipped = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, x, strict=True)]
    same = [np.array_equal(o, i) for o, i in zip(out, x, strict=True)]
    assert all(f or s for f, s in zip(flipped, same, strict=True))
    assert 0 < sum(flipped) < 16


def test_geometry_keeps_the_centre_and_fills_black() -> None:
    x = np.zeros((4, 33, 33, 1), np.float32)
    x[:, 16, 16] = 200.0  # one bright centre pixel
    out = run(dataclasses.replace(OFF, rotation_degrees=30, zoom=0.2), x)
    # Rotation and zoom about the centre leave the centre pixel where it was.
    assert (out[:, 16, 16, 0] > 100).all()
    shifted = run(
        dataclasses.replace(OFF, translate=0.3), np.full((4, 32, 32, 1), 100.0, np.float32)
    )
    assert (shifted == 0).any(), "shifting must bring in black background"


@pytest.mark.parametrize(
    "change",
    [
        {"brightness": 0.2},
        {"contrast": 0.5},
        {"gamma": 0.4},
        {"blur_probability": 1.0},
        {"noise_std": 0.05},
        {"resolution_probability": 1.0, "resolution_min_scale": 0.3},
    ],
)
def test_each_intensity_augmentation_changes_pixels(change: dict) -> None:
    x = batch()
    out = run(dataclasses.replace(OFF, **change), x)
    assert np.abs(out - x).mean() > 0.5


def test_blur_and_resolution_remove_fine_detail() -> None:
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, (4, 32, 32, 1)).astype("float32")
    for change in ({"blur_probability": 1.0}, {"resolution_probability": 1.0}):
        out = run(dataclasses.replace(OFF, **change), x)
        # High-frequency energy (neighbour differences) drops.
        assert np.abs(np.diff(out, axis=2)).mean() < 0.9 * np.abs(np.diff(x, axis=2)).mean()
