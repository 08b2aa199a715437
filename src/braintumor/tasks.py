"""The two tasks a model can be trained for: the four classes, or tumour vs no tumour.

A binary model's classes are derived from the four here, in one place: `notumor` stays
`notumor`, glioma, meningioma and pituitary become `tumour`. The data (manifest, splits,
duplicate clusters, stratification) always keeps the four labels; only the training targets
are mapped, so both tasks train and test on the very same leakage-free splits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from braintumor.constants import (
    BINARY_CLASS_NAMES,
    CLASS_NAMES,
    NO_TUMOUR,
    TASK_BINARY,
    TASK_FOUR_CLASS,
    TASKS,
    TUMOUR,
)


class TaskError(ValueError):
    """An unknown task, or class names that belong to no task."""


def task_class_names(task: str) -> tuple[str, ...]:
    """The softmax order of a model trained for `task`."""
    if task == TASK_FOUR_CLASS:
        return CLASS_NAMES
    if task == TASK_BINARY:
        return BINARY_CLASS_NAMES
    raise TaskError(f"unknown task {task!r}; choose one of {list(TASKS)}")


def task_of(class_names: Sequence[str]) -> str:
    """The task whose classes are `class_names` (in that order)."""
    for task in TASKS:
        if tuple(class_names) == task_class_names(task):
            return task
    raise TaskError(
        f"class names {list(class_names)} are neither the four classes {list(CLASS_NAMES)} "
        f"nor the binary ones {list(BINARY_CLASS_NAMES)}"
    )


def binary_label(label: str) -> str:
    """`notumor` for `notumor`, `tumour` for every tumour class (and for `tumour` itself)."""
    if label == NO_TUMOUR:
        return NO_TUMOUR
    if label in CLASS_NAMES or label == TUMOUR:
        return TUMOUR
    raise TaskError(f"unknown class {label!r}: not one of {list(CLASS_NAMES)}")


def task_labels(labels: Sequence[str], class_names: Sequence[str]) -> list[str]:
    """Data labels (the four classes) as the classes of a model with `class_names`: mapped to
    tumour / no tumour for a binary model, unchanged otherwise."""
    if tuple(class_names) == BINARY_CLASS_NAMES:
        return [binary_label(label) for label in labels]
    return list(labels)


def tumour_probability(probs: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """P(any tumour) = 1 - P(notumor) per row: the binary view of any model's answer."""
    names = list(class_names)
    if NO_TUMOUR not in names:
        raise TaskError(f"the classes {names} have no {NO_TUMOUR!r}: no binary view")
    return 1.0 - np.asarray(probs, dtype=np.float64)[:, names.index(NO_TUMOUR)]


def binary_probs(probs: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """Probabilities in the binary classes' order (no tumour, tumour): a four-class model's
    tumour columns summed, a binary model's unchanged."""
    tumour = tumour_probability(probs, class_names)
    return np.stack([1.0 - tumour, tumour], axis=1)


def common_view(
    probs_a: np.ndarray,
    names_a: Sequence[str],
    probs_b: np.ndarray,
    names_b: Sequence[str],
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Two models' probabilities on the same images, in classes both answer: unchanged when
    their classes agree, else both in the binary view (tumour vs no tumour)."""
    if tuple(names_a) == tuple(names_b):
        return np.asarray(probs_a), np.asarray(probs_b), tuple(names_a)
    return binary_probs(probs_a, names_a), binary_probs(probs_b, names_b), BINARY_CLASS_NAMES
