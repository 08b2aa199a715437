"""Appearance-invariance augmentation (issue 15): inside the head only, seeded, label-blind.

Each option must change what it says, leave the background exactly as it was, be the same
for the same seed, and do nothing when off.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from braintumor.preprocessing import PreprocessSpec
from braintumor.training.augment import AugmentSpec, _head_mask, _partners, augment_batch
from braintumor.training.config import AugmentationConfig
from braintumor.training.dataset import load_split_arrays, make_dataset
from tests.training_helpers import sample_splits

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
SIZE = 32
OPTIONS = {
    "curve_in_head": {"intensity_curve_probability": 1.0, "intensity_curve_head_only": True},
    "invert": {"invert_probability": 1.0},
    "histogram_match": {"histogram_match_probability": 1.0},
    "bias_field": {"bias_field_probability": 1.0},
}


def disc(size: int = SIZE, radius: float = 0.4) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    centre = size / 2 - 0.5
    return (yy - centre) ** 2 + (xx - centre) ** 2 < (radius * size) ** 2


def heads(n: int = 8, size: int = SIZE, seed: int = 0) -> np.ndarray:
    """Textured discs on a near-black noisy background (values 0..8), like a scan."""
    rng = np.random.default_rng(seed)
    head = disc(size)
    x = np.where(head, rng.uniform(30, 220, (n, size, size)), rng.uniform(0, 8, (n, size, size)))
    return x[..., None].astype(np.float32)


def run(spec: AugmentSpec, x: np.ndarray, seed=SEED, labels=None) -> np.ndarray:
    return augment_batch(tf.constant(x), seed, spec, labels=labels).numpy()


def test_new_options_default_off_and_the_config_passes_them_through() -> None:
    spec = AugmentSpec()
    assert not spec.needs_head_mask
    assert spec.invert_probability == spec.histogram_match_probability == 0.0
    assert spec.bias_field_probability == 0.0 and not spec.intensity_curve_head_only
    assert AugmentationConfig().spec() == spec
    on = AugmentationConfig(invert_probability=0.3, bias_field_order=2).spec()
    assert on is not None and on.invert_probability == 0.3 and on.bias_field_order == 2
    assert on.needs_head_mask
    # Head-only without a curve probability does nothing, so it needs no mask.
    assert not AugmentSpec(intensity_curve_head_only=True).needs_head_mask


def test_head_mask_fills_dark_tissue_and_ignores_specks() -> None:
    x = np.zeros((1, SIZE, SIZE, 1), np.float32)
    head = disc()
    x[0, head, 0] = 150.0
    x[0, 12:20, 12:20, 0] = 0.0  # a black "ventricle" inside the head
    x[0, 1, 1, 0] = 255.0  # a single hot pixel in the background
    binary, soft = (m.numpy()[0, ..., 0] for m in _head_mask(tf.constant(x), 20.0))
    np.testing.assert_array_equal(binary, head)  # filled, speck dropped
    assert (soft[~head] == 0).all() and (soft[head] > 0.3).all()
    assert (soft[12:20, 12:20] == 1).all()  # the interior is fully head


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_each_option_changes_the_head_only_deterministically(name: str) -> None:
    x = heads()
    labels = tf.constant([0, 1, 2, 3] * 2)
    spec = dataclasses.replace(OFF, **OPTIONS[name])
    out = run(spec, x, labels=labels)
    background = ~disc()
    np.testing.assert_array_equal(out[:, background], x[:, background])  # background kept
    assert out.min() >= 0 and out.max() <= 255 and out.shape == x.shape
    assert np.abs(out - x)[:, disc()].mean() > 1.0
    np.testing.assert_array_equal(out, run(spec, x, labels=labels))  # same seed, same result
    # Another seed draws other parameters, or (inversion) other images to change.
    half = {k: (0.5 if "probability" in k else v) for k, v in OPTIONS[name].items()}
    spec = dataclasses.replace(OFF, **half)
    first = run(spec, x, labels=labels)
    np.testing.assert_array_equal(first, run(spec, x, labels=labels))
    assert not np.array_equal(first, run(spec, x, tf.constant([7, 4], tf.int64), labels=labels))


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_each_option_is_a_no_op_at_probability_zero(name: str) -> None:
    x = heads()
    off = {key: (0.0 if "probability" in key else value) for key, value in OPTIONS[name].items()}
    np.testing.assert_array_equal(run(dataclasses.replace(OFF, **off), x), x)
    # ... and next to another head-only op it changes nothing more.
    other = "bias_field" if name == "invert" else "invert"
    only_other = dataclasses.replace(OFF, **OPTIONS[other])
    both = dataclasses.replace(only_other, **off)
    np.testing.assert_array_equal(run(both, x), run(only_other, x))


def test_real_scans_keep_their_background(sample_dir: Path) -> None:
    data = load_split_arrays(
        sample_splits(sample_dir), sample_dir, PreprocessSpec(image_size=64, channels=3)
    )
    x = data.train.x[:12].astype(np.float32)
    spec = dataclasses.replace(OFF, **{k: v for o in OPTIONS.values() for k, v in o.items()})
    out = run(spec, x, labels=tf.constant(data.train.y[:12]))
    binary = _head_mask(tf.constant(x), spec.head_threshold)[0].numpy()
    outside = np.broadcast_to(binary == 0, x.shape)
    assert outside.mean() > 0.1  # the sample scans do have background
    np.testing.assert_array_equal(out[outside], x[outside])
    assert (out[x == 0] <= 20).mean() > 0.9  # black stays (nearly all) dark


def test_inversion_reverses_the_order_of_head_intensities() -> None:
    x = heads(4)
    out = run(dataclasses.replace(OFF, invert_probability=1.0), x)
    binary, soft = (m.numpy()[..., 0] for m in _head_mask(tf.constant(x), 20.0))
    for image in range(4):
        inner = soft[image] == 1
        before, after = x[image, ..., 0][inner], out[image, ..., 0][inner]
        head = x[image, ..., 0][binary[image] > 0]
        np.testing.assert_allclose(after, head.min() + head.max() - before, atol=1e-3)
        assert np.corrcoef(before, after)[0, 1] < -0.999
        # Brighter before is darker after, and the head keeps its intensity range.
        assert after.min() >= head.min() - 1e-3 and after.max() <= head.max() + 1e-3


def test_inverted_t1_like_head_looks_t2_like() -> None:
    """Dark CSF and bright white matter (T1) swap: CSF bright, white matter dark (T2)."""
    x = np.zeros((1, SIZE, SIZE, 1), np.float32)
    x[0, disc(), 0] = 180.0  # white matter
    x[0, 13:19, 13:19, 0] = 40.0  # CSF in the ventricles
    out = run(dataclasses.replace(OFF, invert_probability=1.0), x)
    assert out[0, 16, 16, 0] == pytest.approx(180.0) and out[0, 8, 16, 0] == pytest.approx(40.0)
    assert (out[0, ~disc(), 0] == 0).all()


def _wasserstein(a: np.ndarray, b: np.ndarray) -> float:
    quantiles = np.linspace(0.01, 0.99, 99)
    return float(np.abs(np.quantile(a, quantiles) - np.quantile(b, quantiles)).mean())


def test_histogram_matching_moves_the_head_histogram_to_another_class() -> None:
    rng = np.random.default_rng(2)
    head = disc()
    x = np.zeros((6, SIZE, SIZE, 1), np.float32)
    x[:3, head, 0] = rng.uniform(30, 90, (3, head.sum()))  # class 0: dark heads
    x[3:, head, 0] = rng.gamma(4, 10, (3, head.sum())) + 120  # class 1: bright, skewed
    labels = tf.constant([[1.0, 0.0]] * 3 + [[0.0, 1.0]] * 3)  # one-hot, as the pipeline's
    out = run(dataclasses.replace(OFF, histogram_match_probability=1.0), x, labels=labels)
    partner = _partners(SEED, labels, tf.constant(6)).numpy()
    assert (partner[:3] >= 3).all() and (partner[3:] < 3).all()  # always the other class
    inner = _head_mask(tf.constant(x), 20.0)[1].numpy()[..., 0] == 1
    for image in range(6):
        target = x[partner[image], ..., 0][head]
        before = _wasserstein(x[image, ..., 0][inner[image]], target)
        after = _wasserstein(out[image, ..., 0][inner[image]], target)
        assert after < 0.1 * before and after < 3.0
        # Matching is monotone: it keeps the order of the head's intensities.
        order = np.argsort(x[image, ..., 0][inner[image]])
        assert (np.diff(out[image, ..., 0][inner[image]][order]) >= -1e-3).all()


def test_histogram_matching_without_labels_and_on_edge_cases() -> None:
    x = heads(4)
    x[2] = 0.0  # an all-black image: nothing to match to, nothing to change
    spec = dataclasses.replace(OFF, histogram_match_probability=1.0)
    out = run(spec, x)
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out[2], 0.0)
    partner = _partners(SEED, None, tf.constant(4)).numpy()
    assert (partner != np.arange(4)).all()  # some other image of the batch
    single = run(spec, x[:1], labels=tf.constant([1]))  # a batch of one matches itself
    np.testing.assert_allclose(single, x[:1], atol=1.0)


def test_bias_field_is_smooth_multiplicative_and_content_independent() -> None:
    flat = np.full((4, SIZE, SIZE, 1), 40.0, np.float32)  # the head fills the image
    textured = np.random.default_rng(3).uniform(25, 40, flat.shape).astype(np.float32)
    spec = dataclasses.replace(OFF, bias_field_probability=1.0)
    field = run(spec, flat) / 40.0
    unclipped = field < 255.0 / 40.0
    assert unclipped.mean() > 0.9
    ratio = run(spec, textured) / textured
    np.testing.assert_allclose(ratio[unclipped], field[unclipped], rtol=1e-4)
    field = np.where(unclipped, field, np.nan)
    log_field = np.log(field[..., 0])
    spread = np.nanmax(log_field, axis=(1, 2)) - np.nanmin(log_field, axis=(1, 2))
    assert spread.min() > 0.2  # a real change of intensity across the head ...
    for axis in (1, 2):  # ... that varies smoothly: its slope changes slowly, pixel to pixel
        slope = np.nanmax(np.abs(np.diff(log_field, axis=axis)))
        curvature = np.nanmax(np.abs(np.diff(log_field, 2, axis=axis)))
        assert slope < 0.2 and curvature < 0.1 * slope
    # The coefficients set the strength.
    weak = run(dataclasses.replace(spec, bias_field_coefficients=0.05), flat) / 40.0
    assert np.ptp(np.log(weak), axis=(1, 2, 3)).max() < 0.2 * spread.max()


def test_curve_in_head_can_lift_black_tissue_but_not_the_background() -> None:
    x = np.zeros((8, SIZE, SIZE, 1), np.float32)
    x[:, disc(), 0] = 120.0
    x[:, 13:19, 13:19, 0] = 0.0  # black tissue inside the head
    spec = dataclasses.replace(OFF, intensity_curve_probability=1.0, intensity_curve_head_only=True)
    out = run(spec, x)
    assert (out[:, 16, 16, 0] > 10).all()  # black inside the head gets a random level
    np.testing.assert_array_equal(out[:, ~disc()], 0.0)
    # The whole-image curve (the existing option) keeps exact black at 0 instead.
    whole = run(dataclasses.replace(spec, intensity_curve_head_only=False), x)
    np.testing.assert_array_equal(whole[:, 16, 16, 0], 0.0)


def test_three_channel_images_are_handled_alike() -> None:
    x = np.repeat(heads(4), 3, axis=-1)
    spec = dataclasses.replace(OFF, **{k: v for o in OPTIONS.values() for k, v in o.items()})
    out = run(spec, x, labels=tf.constant([0, 1, 0, 1]))
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    np.testing.assert_array_equal(out[:, ~disc()], x[:, ~disc()])


def test_the_pipeline_keeps_labels_and_weights_and_is_seeded() -> None:
    x = np.clip(heads(12, 16), 0, 255).astype(np.uint8)
    y = np.arange(12) % 3
    weights = np.linspace(0.5, 2.0, 12).astype("float32")
    kwargs = {"num_classes": 3, "batch_size": 4, "training": True, "sample_weight": weights}
    spec = dataclasses.replace(OFF, **{k: v for o in OPTIONS.values() for k, v in o.items()})

    def take(augment):
        ds = make_dataset(x, y, seed=5, augment=augment, **kwargs)
        return [tuple(part.numpy() for part in batch) for batch in ds.take(6)]

    plain, augmented, again = take(None), take(spec), take(spec)
    for (_, py, pw), (ax, ay, aw), (gx, _, _) in zip(plain, augmented, again, strict=True):
        np.testing.assert_array_equal(ay, py)  # labels untouched
        np.testing.assert_array_equal(aw, pw)  # and weights
        np.testing.assert_array_equal(ax, gx)  # the same seed gives the same stream
    assert any(not np.array_equal(a[0], p[0]) for a, p in zip(augmented, plain, strict=True))
