"""Class-imbalance strategies for the training split, and the focal loss.

- `class_weight` (default): weight each image by n / (k * n_class), as scikit-learn's
  "balanced" mode; the class distribution is unchanged, the loss is re-weighted.
- `oversample`: repeat randomly drawn images of every smaller class until it has
  `target_ratio` times as many as the largest. The training pipeline augments every batch,
  so the repeats are augmented copies (exact copies when augmentation is off).
- `smote`: as the research did, on down-scaled pixels. Neighbours within a class are searched
  on images shrunk to `smote_image_size` px (fast, and robust to pixel noise); each synthetic
  image is the full-resolution interpolation x_i + u (x_j - x_i), u ~ U(0, 1), of an image and
  one of its k nearest same-class neighbours. Interpolated MRI slices are blends of two heads,
  not anatomy: prefer `class_weight`/`oversample`; `smote` is there to reproduce the research.
- focal loss (gamma, alpha) replaces cross-entropy and combines with any of the above.
- within groups (`balance(..., groups=...)`, with `class_weight`): given a group label per
  image (e.g. its appearance group: MRI sequence / source look), weight so that the classes
  are balanced inside every group (`group_class_weights`). Then the group says nothing about
  the class in the weighted data, so a model gains nothing from the "sequence shortcut"
  (a look that goes with one class). A group that holds one class only cannot be balanced
  by weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STRATEGIES: tuple[str, ...] = ("class_weight", "oversample", "smote", "none")


class BalancingError(ValueError):
    """A balancing request that cannot be met (unknown strategy, too few images...)."""


@dataclass
class Balanced:
    """The training arrays after balancing; `sample_weight` is None unless re-weighted."""

    x: np.ndarray
    y: np.ndarray
    sample_weight: np.ndarray | None
    strategy: str

    def class_counts(self, num_classes: int) -> np.ndarray:
        return np.bincount(self.y, minlength=num_classes)


def class_weights(y: np.ndarray, num_classes: int) -> dict[int, float]:
    """scikit-learn's "balanced" weights n / (k * n_c); classes absent from `y` get 0."""
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=num_classes)
    present = counts > 0
    weights = np.zeros(num_classes, dtype=np.float64)
    weights[present] = len(y) / (present.sum() * counts[present])
    return {index: float(weight) for index, weight in enumerate(weights)}


def group_class_weights(
    y: np.ndarray, groups: np.ndarray, num_classes: int, max_weight: float = 10.0
) -> np.ndarray:
    """Per-image weights that balance the classes within each group.

    In a group of n_g images with k_g classes present, an image of class c gets
    n_g / (k_g * n_gc): every class present carries the same share of its group, and the
    group keeps its total weight n_g. When every group holds every class, the classes are
    balanced overall too (each totals sum_g n_g / k). Weights are capped at `max_weight`
    (a class of 2 images in a group of 500 would otherwise weigh 60 times more, which
    overfits those two) and rescaled to mean 1, the mean of `class_weights`.

    Raises:
        BalancingError: groups and labels of different lengths, or a cap below 1.
    """
    y = np.asarray(y, dtype=np.int64)
    groups = np.asarray(groups)
    if groups.shape != y.shape:
        raise BalancingError(
            f"one group per image is needed: {len(groups)} group labels for {len(y)} images"
        )
    if max_weight < 1:
        raise BalancingError(f"max_weight must be at least 1, not {max_weight}")
    if len(y) == 0:
        return np.zeros(0, np.float32)
    _, group = np.unique(groups, return_inverse=True)
    group = group.reshape(-1)
    cells = np.zeros((group.max() + 1, num_classes), np.int64)
    np.add.at(cells, (group, y), 1)
    sizes = cells.sum(axis=1)
    present = (cells > 0).sum(axis=1)
    weights = sizes[group] / (present[group] * cells[group, y])
    weights = np.minimum(weights, max_weight)
    return (weights / weights.mean()).astype(np.float32)


def target_counts(y: np.ndarray, num_classes: int, target_ratio: float) -> np.ndarray:
    """How many images each class should have: at least `target_ratio` x the largest class."""
    if not 0 < target_ratio <= 1:
        raise BalancingError(f"target_ratio must be in (0, 1], not {target_ratio}")
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=num_classes)
    goal = round(target_ratio * counts.max())
    return np.where(counts > 0, np.maximum(counts, goal), 0)


def oversample_indices(
    y: np.ndarray, num_classes: int, target_ratio: float = 1.0, seed: int = 0
) -> np.ndarray:
    """Indices into `y` (all originals, then random repeats of smaller classes), shuffled."""
    y = np.asarray(y, dtype=np.int64)
    rng = np.random.default_rng(seed)
    targets = target_counts(y, num_classes, target_ratio)
    extra = []
    for label in range(num_classes):
        members = np.flatnonzero(y == label)
        needed = int(targets[label]) - len(members)
        if needed > 0:
            extra.append(rng.choice(members, size=needed, replace=True))
    indices = np.concatenate([np.arange(len(y)), *extra]) if extra else np.arange(len(y))
    return rng.permutation(indices)


def smote(
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    *,
    target_ratio: float = 1.0,
    neighbors: int = 5,
    search_size: int = 32,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """SMOTE for images (see the module docstring); returns originals + synthetic images."""
    import cv2
    from sklearn.neighbors import NearestNeighbors

    y = np.asarray(y, dtype=np.int64)
    rng = np.random.default_rng(seed)
    targets = target_counts(y, num_classes, target_ratio)
    new_x, new_y = [x], [y]
    for label in range(num_classes):
        members = np.flatnonzero(y == label)
        needed = int(targets[label]) - len(members)
        if needed <= 0:
            continue
        if len(members) < 2:
            raise BalancingError(
                f"SMOTE needs at least 2 images of class {label} to interpolate, has "
                f"{len(members)}: use strategy oversample or class_weight"
            )
        small = np.stack(
            [
                cv2.resize(x[i], (search_size, search_size), interpolation=cv2.INTER_AREA).ravel()
                for i in members
            ]
        ).astype(np.float32)
        k = min(neighbors, len(members) - 1)
        _, found = NearestNeighbors(n_neighbors=k + 1).fit(small).kneighbors(small)
        base = rng.integers(0, len(members), size=needed)
        partner = found[base, rng.integers(1, k + 1, size=needed)]
        weight = rng.random(needed).astype(np.float32).reshape(-1, *([1] * (x.ndim - 1)))
        first = x[members[base]].astype(np.float32)
        second = x[members[partner]].astype(np.float32)
        synthetic = first + weight * (second - first)
        new_x.append(np.clip(np.rint(synthetic), 0, 255).astype(x.dtype))
        new_y.append(np.full(needed, label, dtype=np.int64))
    return np.concatenate(new_x), np.concatenate(new_y)


def balance(
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    strategy: str = "class_weight",
    *,
    target_ratio: float = 1.0,
    smote_neighbors: int = 5,
    smote_image_size: int = 32,
    seed: int = 0,
    groups: np.ndarray | None = None,
    group_max_weight: float = 10.0,
) -> Balanced:
    """Apply one strategy of `STRATEGIES` to the training arrays.

    `groups` (one label per image, e.g. its appearance group) with `class_weight`: balance
    the classes within each group instead (`group_class_weights`, capped at
    `group_max_weight`); the strategy is then reported as `class_weight_within_groups`.
    """
    y = np.asarray(y, dtype=np.int64)
    if groups is not None:
        if strategy != "class_weight":
            raise BalancingError(
                f"balancing within groups re-weights images: use it with strategy "
                f"class_weight, not {strategy!r}"
            )
        weights = group_class_weights(y, groups, num_classes, group_max_weight)
        return Balanced(x, y, weights, "class_weight_within_groups")
    if strategy == "none":
        return Balanced(x, y, None, strategy)
    if strategy == "class_weight":
        weights = class_weights(y, num_classes)
        return Balanced(x, y, np.array([weights[int(c)] for c in y], np.float32), strategy)
    if strategy == "oversample":
        index = oversample_indices(y, num_classes, target_ratio, seed)
        return Balanced(x[index], y[index], None, strategy)
    if strategy == "smote":
        new_x, new_y = smote(
            x,
            y,
            num_classes,
            target_ratio=target_ratio,
            neighbors=smote_neighbors,
            search_size=smote_image_size,
            seed=seed,
        )
        return Balanced(new_x, new_y, None, strategy)
    raise BalancingError(f"unknown balancing strategy {strategy!r}; choose one of {STRATEGIES}")


def make_loss(
    *,
    focal: bool = False,
    gamma: float = 2.0,
    alpha: float | tuple[float, ...] | list[float] = 0.25,
    label_smoothing: float = 0.0,
):
    """Categorical cross-entropy, or focal loss  -alpha (1 - p)^gamma log p  (Lin et al.).

    Both are built-in Keras losses, so a saved model reloads without custom objects.
    With gamma = 0 and alpha = 1 the focal loss is exactly the cross-entropy.
    """
    import keras

    if not focal:
        return keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
    alpha_value = list(alpha) if isinstance(alpha, list | tuple) else float(alpha)
    return keras.losses.CategoricalFocalCrossentropy(
        alpha=alpha_value, gamma=float(gamma), label_smoothing=label_smoothing
    )


def describe_plan(
    y: np.ndarray,
    class_names: tuple[str, ...] | list[str],
    strategy: str,
    target_ratio: float = 1.0,
) -> dict:
    """What a strategy will do to the training split, from its labels alone.

    Returns per-class counts before and after, and the loss weight per class. Raises
    `BalancingError` for a plan that cannot work (a class with no training image, SMOTE on a
    class of one), so a run fails before any training starts.
    """
    k = len(class_names)
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=k)
    empty = [class_names[i] for i in range(k) if counts[i] == 0]
    if empty:
        raise BalancingError(
            f"no training images of class(es) {empty}: the model cannot learn them"
        )
    if strategy not in STRATEGIES:
        raise BalancingError(f"unknown balancing strategy {strategy!r}; choose one of {STRATEGIES}")
    if strategy == "smote" and counts.min() < 2:
        raise BalancingError("SMOTE needs at least 2 training images per class")
    after = target_counts(y, k, target_ratio) if strategy in ("oversample", "smote") else counts
    weights = class_weights(y, k) if strategy == "class_weight" else dict.fromkeys(range(k), 1.0)
    return {
        "strategy": strategy,
        "before": {class_names[i]: int(counts[i]) for i in range(k)},
        "after": {class_names[i]: int(after[i]) for i in range(k)},
        "loss_weight": {class_names[i]: round(weights[i], 4) for i in range(k)},
    }
