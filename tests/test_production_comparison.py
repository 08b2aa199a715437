"""compare_with_production on small synthetic tables: which test images are compared (none
that production trained on, nor copies of them), the paired figures, the binary view, and
when no comparison is made."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from braintumor.constants import BINARY_CLASS_NAMES, CLASS_NAMES
from braintumor.evaluation.comparison import Incumbent, compare_with_production
from braintumor.promotion import IncumbentComparison, NotCompared

LABELS = ["glioma"] * 4 + ["meningioma"] * 4 + ["pituitary"] * 4  # 12 test images
PATHS = [f"test/{i}.jpg" for i in range(12)]


def _splits() -> pd.DataFrame:
    """The candidate's table: 12 test images (one cluster each) and production's old training
    image `old/copy.jpg`, a copy of test image 2 (same cluster)."""
    test = pd.DataFrame(
        {"path": PATHS, "label": LABELS, "split": "test", "status": "kept", "cluster_id": range(12)}
    )
    copy = pd.DataFrame(
        {
            "path": ["old/copy.jpg"],
            "label": ["glioma"],
            "split": "train",
            "status": "redundant",
            "cluster_id": [2],
        }
    )
    return pd.concat([test, copy], ignore_index=True)


def _production_splits() -> pd.DataFrame:
    """Production trained on test images 0 and 4, and on the copy of image 2."""
    return pd.DataFrame(
        {
            "path": ["test/0.jpg", "test/4.jpg", "old/copy.jpg"],
            "label": ["glioma", "meningioma", "glioma"],
            "split": ["train", "val", "train"],
            "status": "kept",
            "cluster_id": [0, 4, 2],
        }
    )


def _predictions() -> pd.DataFrame:
    """The candidate gets every test image right."""
    onehot = np.eye(4)[[CLASS_NAMES.index(label) for label in LABELS]]
    table = pd.DataFrame({"path": PATHS, "label": LABELS})
    for index, name in enumerate(CLASS_NAMES):
        table[f"p_{name}"] = onehot[:, index]
    return table


class _Scorer:
    """Production's answers: right, except the unseen pituitary images read as glioma."""

    def __init__(self, names=CLASS_NAMES):
        self.names, self.asked = names, []

    def __call__(self, paths: list[str]) -> np.ndarray:
        self.asked.append(list(paths))
        labels = [LABELS[PATHS.index(p)] for p in paths]
        if self.names == BINARY_CLASS_NAMES:  # "tumour" for every image
            return np.tile([0.1, 0.9], (len(paths), 1))
        answers = ["glioma" if label == "pituitary" else label for label in labels]
        return np.eye(4)[[CLASS_NAMES.index(a) for a in answers]] * 0.9 + 0.025


def test_compares_only_images_neither_model_trained_on_with_the_paired_figures() -> None:
    scorer = _Scorer()
    incumbent = Incumbent("3", _production_splits(), CLASS_NAMES, scorer)
    comparison, tests = compare_with_production(
        incumbent, _predictions(), _splits(), 5, CLASS_NAMES
    )
    assert isinstance(comparison, IncumbentComparison)
    unseen = [p for i, p in enumerate(PATHS) if i not in (0, 2, 4)]
    assert scorer.asked == [unseen]  # never an image production saw, nor a copy of one
    assert comparison.images == 9 and comparison.excluded == 3
    # The 9: glioma 2, meningioma 3, pituitary 4 (all read as glioma by production): glioma
    # precision 2/6, recall 1, F1 0.5; meningioma F1 1; pituitary F1 0.
    assert comparison.weighted_f1 == pytest.approx((2 * 0.5 + 3 * 1 + 4 * 0) / 9)
    assert comparison.delta == pytest.approx(1 - 4 / 9)
    assert comparison.version == "3"
    # Only the candidate is right on 4 images: exact McNemar p = 2 * 0.5**4.
    assert tests["mcnemar_p_value"] == pytest.approx(0.125)
    assert "McNemar p=0.125" in comparison.test and "tumour vs no tumour" not in comparison.test
    assert tests["comparison_images"] == 9
    assert 0 <= tests["paired_bootstrap_p_value"] <= 1
    assert comparison.delta_ci[0] <= comparison.delta <= comparison.delta_ci[1]


def test_a_binary_production_model_is_compared_as_tumour_vs_no_tumour() -> None:
    labels = ["notumor"] * 4 + LABELS[4:]
    predictions = _predictions().assign(label=labels)
    predictions[[f"p_{n}" for n in CLASS_NAMES]] = np.eye(4)[
        [CLASS_NAMES.index(label) for label in labels]
    ]
    splits = _splits()
    splits.loc[:3, "label"] = "notumor"
    production = _production_splits().iloc[:0]  # it trained on none of them
    scorer = _Scorer(BINARY_CLASS_NAMES)
    incumbent = Incumbent("5", production, BINARY_CLASS_NAMES, scorer)
    comparison, _ = compare_with_production(incumbent, predictions, splits, 1, CLASS_NAMES)
    assert comparison.images == 12 and comparison.excluded == 0
    # "tumour" for all 12: no-tumour F1 0 (4 images), tumour F1 2*(8/12)/(8/12 + 1) = 0.8.
    assert comparison.weighted_f1 == pytest.approx(8 * 0.8 / 12)
    assert comparison.delta == pytest.approx(1 - 8 * 0.8 / 12)
    assert "as tumour vs no tumour (production is binary)" in comparison.test


def test_too_few_unseen_images_or_no_recorded_split_compare_nothing() -> None:
    scorer = _Scorer()
    few, tests = compare_with_production(
        Incumbent("3", _production_splits(), CLASS_NAMES, scorer),
        _predictions(),
        _splits(),
        10,
        CLASS_NAMES,
    )
    assert isinstance(few, NotCompared) and few.images == 9
    assert "only 9 of the 12 test images" in few.reason and "needs 10" in few.reason
    assert tests == {"comparison_images": 9}
    unrecorded, tests = compare_with_production(
        Incumbent("4", None, (), scorer), _predictions(), _splits(), 1, CLASS_NAMES
    )
    assert isinstance(unrecorded, NotCompared)
    assert unrecorded.reason == "production version 4 has no recorded split" and tests == {}
    assert scorer.asked == []  # the model was never needed
