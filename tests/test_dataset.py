"""From the splits table to arrays (the shared preprocessing) and to seeded tf.data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from braintumor.preprocessing import PreprocessSpec, load_and_preprocess
from braintumor.training.augment import AugmentSpec
from braintumor.training.dataset import (
    DatasetError,
    load_images,
    load_split_arrays,
    make_dataset,
    steps_per_epoch,
)
from tests.training_helpers import sample_splits

SPEC = PreprocessSpec(image_size=48, channels=1)


def test_split_arrays_hold_exactly_the_shared_preprocessing(sample_dir: Path) -> None:
    splits = sample_splits(sample_dir)
    data = load_split_arrays(splits, sample_dir, SPEC)
    kept = splits[splits.status == "kept"]
    assert len(data.train) == (kept.split == "train").sum()
    assert len(data.val) == (kept.split == "val").sum()
    assert len(data.test) == 0
    assert data.train.x.shape[1:] == (48, 48, 1) and data.train.x.dtype == np.uint8
    assert not any("planted" in p for p in data.train.paths)
    assert set(np.unique(data.train.y)) == {0, 1, 2, 3}
    for index in (0, len(data.train) - 1):
        expected = load_and_preprocess(sample_dir / data.train.paths[index], SPEC)
        np.testing.assert_array_equal(data.train.x[index].astype(np.float32), expected)
    assert data.class_names == ("glioma", "meningioma", "notumor", "pituitary")


def test_clahe_and_three_channel_variants(sample_dir: Path) -> None:
    splits = sample_splits(sample_dir)
    path = splits.loc[splits.status == "kept", "path"].iloc[0]
    raw = load_images([path], sample_dir, PreprocessSpec(image_size=48, channels=3))
    clahe = load_images(
        [path], sample_dir, PreprocessSpec(image_size=48, channels=3, variant="clahe")
    )
    assert raw.shape == (1, 48, 48, 3)
    np.testing.assert_array_equal(raw[..., 0], raw[..., 2])
    assert not np.array_equal(raw, clahe)


def test_missing_and_undecodable_files_are_reported_by_name(
    sample_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(DatasetError, match=r"missing under .*nope\.jpg"):
        load_images(["Training/glioma_tumor/nope.jpg"], sample_dir, SPEC)
    planted = "Training/glioma_tumor/planted_zero_bytes.jpg"
    with pytest.raises(DatasetError, match=r"planted_zero_bytes\.jpg"):
        load_images([planted], sample_dir, SPEC)
    splits = sample_splits(sample_dir)
    with pytest.raises(DatasetError, match="no kept rows in split 'val'"):
        load_split_arrays(splits[splits.split != "val"], sample_dir, SPEC)
    with pytest.raises(DatasetError, match="missing columns"):
        load_split_arrays(splits.drop(columns=["status"]), sample_dir, SPEC)
    bad = splits.copy()
    bad.loc[0, "label"] = "astrocytoma"
    with pytest.raises(DatasetError, match="astrocytoma"):
        load_split_arrays(bad, sample_dir, SPEC)


def _take(ds, n: int) -> list:
    return [tuple(part.numpy() for part in element) for element in ds.take(n)]


def test_training_stream_is_seeded_reshuffled_augmented_and_one_hot() -> None:
    x = np.arange(10 * 8 * 8, dtype=np.uint8).reshape(10, 8, 8, 1)
    y = np.arange(10) % 4
    weights = np.linspace(0.5, 2, 10).astype("float32")
    kwargs = {"num_classes": 4, "batch_size": 4, "training": True, "sample_weight": weights}
    first = _take(make_dataset(x, y, seed=1, augment=AugmentSpec(), **kwargs), 6)
    again = _take(make_dataset(x, y, seed=1, augment=AugmentSpec(), **kwargs), 6)
    other = _take(make_dataset(x, y, seed=2, augment=AugmentSpec(), **kwargs), 6)
    for a, b in zip(first, again, strict=True):
        for part_a, part_b in zip(a, b, strict=True):
            np.testing.assert_array_equal(part_a, part_b)
    assert any(not np.array_equal(a[1], b[1]) for a, b in zip(first, other, strict=True))
    images, onehot, w = first[0]
    assert images.dtype == np.float32 and onehot.shape == (4, 4) and w.shape == (4,)
    np.testing.assert_array_equal(onehot.sum(axis=1), 1)
    # Epoch 1 = batches 0..2 (4+4+2 images), then the stream repeats, reshuffled.
    assert steps_per_epoch(10, 4) == 3
    epoch_1 = np.concatenate([b[1].argmax(1) for b in first[:3]])
    assert sorted(epoch_1) == sorted(y)
    order_1 = np.concatenate([b[2] for b in first[:3]])
    order_2 = np.concatenate([b[2] for b in first[3:6]])
    assert sorted(order_1) == sorted(order_2) and not np.array_equal(order_1, order_2)


def test_evaluation_stream_is_in_order_once_and_unaugmented() -> None:
    x = np.arange(5 * 4 * 4, dtype=np.uint8).reshape(5, 4, 4, 1)
    y = np.array([0, 1, 2, 3, 0])
    batches = list(make_dataset(x, y, num_classes=4, batch_size=2, training=False))
    assert len(batches) == 3
    images = np.concatenate([b[0].numpy() for b in batches])
    np.testing.assert_array_equal(images, x.astype(np.float32))
    with pytest.raises(DatasetError, match="same length"):
        make_dataset(x, y[:3], num_classes=4, batch_size=2, training=False)
