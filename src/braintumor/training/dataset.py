"""From the splits table to in-memory arrays, and from arrays to `tf.data` pipelines.

The dataset is small (about 3k slices), so every image is decoded and preprocessed once, in
threads, through the shared `preprocessing.preprocess_gray` (the same path serving uses), and
kept in memory as uint8. `make_dataset` then builds the tf.data pipeline: seeded shuffle,
batching, training-only augmentation, float32 cast, prefetch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from braintumor.constants import CLASS_NAMES, TEST, TRAIN, VAL
from braintumor.imaging import ImageDecodeError, decode_image
from braintumor.preprocessing import PreprocessSpec, preprocess_gray
from braintumor.tasks import TaskError, task_labels

SPLIT_COLUMNS = ("path", "label", "split", "status")
KEPT = "kept"


class DatasetError(ValueError):
    """A splits table or data root that cannot produce training arrays."""


@dataclass
class ArraySplit:
    """One split in memory: images (n, size, size, channels) uint8 and integer labels.

    `groups`: optional per-image group labels (e.g. appearance groups) read from a column of
    the splits table, for `balancing.group_class_weights`; None when not loaded.
    """

    x: np.ndarray
    y: np.ndarray
    paths: list[str]
    groups: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.y)

    def class_counts(self, num_classes: int) -> np.ndarray:
        return np.bincount(self.y, minlength=num_classes)


@dataclass
class SplitArrays:
    """The train/val/test arrays of one protocol, with what produced them."""

    train: ArraySplit
    val: ArraySplit
    test: ArraySplit
    class_names: tuple[str, ...]
    spec: PreprocessSpec


def label_indices(labels: Sequence[str], class_names: Sequence[str] = CLASS_NAMES) -> np.ndarray:
    """Each data label's index among a model's `class_names`; for a binary model the four
    labels are mapped to tumour / no tumour first (`braintumor.tasks.task_labels`)."""
    try:
        labels = task_labels(labels, class_names)
    except TaskError as exc:
        raise DatasetError(str(exc)) from None
    lookup = {name: index for index, name in enumerate(class_names)}
    unknown = sorted(set(labels) - set(lookup))
    if unknown:
        raise DatasetError(f"labels {unknown} are not among the classes {list(class_names)}")
    return np.fromiter((lookup[label] for label in labels), dtype=np.int64, count=len(labels))


def load_images(
    paths: Sequence[str],
    data_root: str | Path,
    spec: PreprocessSpec,
    *,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Decode and preprocess images (paths relative to `data_root`) into one uint8 array.

    Returns (n, size, size, channels) uint8: exactly `preprocessing.preprocess` (whose float32
    values are whole numbers in [0, 255]) stored compactly.

    Raises:
        DatasetError: files are missing or cannot be decoded (all of them are listed).
    """
    root = Path(data_root)
    missing = [p for p in paths if not (root / p).is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DatasetError(
            f"{len(missing)} image(s) of the splits table are missing under {root}: {shown} "
            "(is data_root the folder the table's paths are relative to?)"
        )
    out = np.empty((len(paths), spec.image_size, spec.image_size, spec.channels), np.uint8)
    failures: list[str] = []

    def work(index: int) -> None:
        try:
            gray = decode_image((root / paths[index]).read_bytes()).pixels
        except ImageDecodeError as exc:
            failures.append(f"{paths[index]} ({exc})")
            return
        out[index] = preprocess_gray(gray, spec)[..., None]

    workers = workers or min(8, (os.cpu_count() or 2) + 2)
    done = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(work, range(len(paths))):
            done += 1
            if progress is not None and (done % 256 == 0 or done == len(paths)):
                progress(done, len(paths))
    if failures:
        raise DatasetError(
            f"{len(failures)} image(s) could not be decoded: {'; '.join(failures[:5])} "
            "(re-run ingestion, which quarantines unreadable files)"
        )
    return out


def select_split(splits: pd.DataFrame, split: str) -> pd.DataFrame:
    """Rows of one split that training may use (status == "kept"), in a stable order."""
    missing = set(SPLIT_COLUMNS) - set(splits.columns)
    if missing:
        raise DatasetError(f"the splits table is missing columns {sorted(missing)}")
    rows = splits[(splits["split"] == split) & (splits["status"] == KEPT)]
    return rows.sort_values("path").reset_index(drop=True)


def load_split_arrays(
    splits: pd.DataFrame,
    data_root: str | Path,
    spec: PreprocessSpec,
    *,
    class_names: Sequence[str] = CLASS_NAMES,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    group_column: str | None = None,
) -> SplitArrays:
    """Load the kept train/val/test rows of a splits table (paths relative to `data_root`).

    `group_column`: a column of the table whose values (as strings) become each split's
    `groups` (e.g. the appearance group of every image); None loads no groups.

    Raises:
        DatasetError: no training or validation rows, unknown labels, missing/bad files, a
            missing group column or empty group values.
    """
    if group_column is not None and group_column not in splits.columns:
        raise DatasetError(
            f"the splits table has no group column {group_column!r} "
            f"(its columns: {sorted(map(str, splits.columns))})"
        )
    loaded: dict[str, ArraySplit] = {}
    for name in (TRAIN, VAL, TEST):
        rows = select_split(splits, name)
        if rows.empty and name != TEST:
            raise DatasetError(
                f"the splits table has no kept rows in split {name!r}: training needs both "
                "train and val (run the integrity split first)"
            )
        paths = rows["path"].astype(str).tolist()
        y = label_indices(rows["label"].tolist(), class_names)
        groups = None
        if group_column is not None:
            if rows[group_column].isna().any():
                raise DatasetError(
                    f"{int(rows[group_column].isna().sum())} {name} row(s) have no value in "
                    f"the group column {group_column!r}"
                )
            groups = rows[group_column].astype(str).to_numpy()
        x = load_images(paths, data_root, spec, workers=workers, progress=progress)
        loaded[name] = ArraySplit(x, y, paths, groups)
    return SplitArrays(loaded[TRAIN], loaded[VAL], loaded[TEST], tuple(class_names), spec)


def steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, math.ceil(n / batch_size))


def make_dataset(
    x: np.ndarray,
    y: np.ndarray,
    *,
    num_classes: int,
    batch_size: int,
    training: bool,
    augment=None,
    sample_weight: np.ndarray | None = None,
    seed: int = 0,
):
    """A tf.data pipeline over in-memory arrays, yielding (float32 images, one-hot[, weight]).

    Training (`training=True`): seeded reshuffle every epoch, batches, augmentation with
    `augment` (an `AugmentSpec`, or None), repeated forever: pass
    `steps_per_epoch(len(y), batch_size)` to `fit`. Evaluation: in order, once, no
    augmentation. The same seed gives the same stream of batches.
    """
    import tensorflow as tf

    from braintumor.training.augment import augment_batch

    if len(x) != len(y) or (sample_weight is not None and len(sample_weight) != len(y)):
        raise DatasetError("images, labels and sample weights must have the same length")
    if len(y) == 0:
        raise DatasetError("cannot make a dataset of zero images")
    onehot = np.eye(num_classes, dtype=np.float32)[np.asarray(y, dtype=np.int64)]
    columns = (x, onehot) if sample_weight is None else (x, onehot, sample_weight.astype("float32"))
    ds = tf.data.Dataset.from_tensor_slices(columns)
    if training:
        ds = ds.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if training:
        ds = ds.repeat()

    def to_float(*batch):
        return (tf.cast(batch[0], tf.float32), *batch[1:])

    if training and augment is not None:
        ds = tf.data.Dataset.zip(ds, tf.data.Dataset.counter())

        def augmented(batch, index):
            pair = tf.stack([tf.constant(seed, tf.int64), index])
            # The one-hot labels let histogram matching pick a partner of another class.
            images = augment_batch(tf.cast(batch[0], tf.float32), pair, augment, labels=batch[1])
            return (images, *batch[1:])

        ds = ds.map(augmented, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:
        ds = ds.map(to_float, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)
