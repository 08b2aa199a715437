"""The candidate against the production model, image by image, on the candidate's test
images that neither model trained on: what the promotion gate's no-regression check reads."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from braintumor.evaluation.metrics import mcnemar, paired_bootstrap_delta, weighted_f1
from braintumor.integrity.splits import trained_paths, unseen_by
from braintumor.promotion import IncumbentComparison, NotCompared
from braintumor.tasks import common_view, task_of
from braintumor.training.dataset import label_indices


@dataclass(frozen=True)
class Incumbent:
    """The production model as the gate sees it.

    Attributes:
        version: Its model version (number).
        splits: The splits table its run recorded (None: none was recorded).
        class_names: What it answers, in its output order.
        score: Its calibrated probabilities on the images at these paths (called only when
            the comparison runs, so a model that is not needed is never loaded).
    """

    version: str
    splits: pd.DataFrame | None
    class_names: tuple[str, ...]
    score: Callable[[list[str]], np.ndarray]


def compare_with_production(
    incumbent: Incumbent,
    test_predictions: pd.DataFrame,
    splits: pd.DataFrame,
    min_images: int,
    class_names: Sequence[str],
) -> tuple[IncumbentComparison | NotCompared, dict[str, Any]]:
    """Re-score `incumbent` on the candidate's test images that neither model trained on
    (production's recorded split, copies included, via the candidate's `splits`) and compare
    the two image by image (paired bootstrap and McNemar); `NotCompared` when fewer than
    `min_images` are left or production has no recorded split. When the two answer different
    classes (a binary candidate, a four-class production model or the other way round), both
    are compared in the binary view: tumour vs no tumour.

    Returns the comparison and the figures the gate records with its decision."""
    version = incumbent.version
    if incumbent.splits is None:
        return NotCompared(version, 0, f"production version {version} has no recorded split"), {}
    paths = test_predictions["path"].tolist()
    unseen = unseen_by(splits, paths, trained_paths(incumbent.splits))
    compared = test_predictions[unseen]
    excluded = int((~unseen).sum())
    if len(compared) < min_images:
        reason = (
            f"only {len(compared)} of the {len(test_predictions)} test images were seen by "
            f"neither model ({excluded} are in production's training or validation data, or "
            f"copies of them); the policy needs {min_images} (gate.min_comparison_images)"
        )
        return NotCompared(version, len(compared), reason), {"comparison_images": len(compared)}
    names = tuple(class_names)
    candidate_probs = compared[[f"p_{n}" for n in names]].to_numpy(np.float64)
    probs = np.asarray(incumbent.score(compared["path"].tolist()), np.float64)
    theirs = incumbent.class_names
    view = "" if theirs == names else f"; as tumour vs no tumour (production is {task_of(theirs)})"
    candidate_probs, probs, names = common_view(candidate_probs, names, probs, theirs)
    y = label_indices(compared["label"].tolist(), names)
    paired = paired_bootstrap_delta(y, candidate_probs, probs)
    exact = mcnemar(y, candidate_probs.argmax(axis=1), probs.argmax(axis=1))
    comparison = IncumbentComparison(
        version=version,
        weighted_f1=weighted_f1(y, probs.argmax(axis=1), len(names)),
        delta=paired.delta,
        delta_ci=paired.ci,
        p_value=paired.p_value,
        test=f"paired bootstrap; McNemar p={exact.p_value:.3g}{view}",
        images=len(compared),
        excluded=excluded,
    )
    return comparison, {
        "mcnemar_p_value": exact.p_value,
        "paired_bootstrap_p_value": paired.p_value,
        "comparison_images": len(compared),
    }
