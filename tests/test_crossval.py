"""Cross-validation folds and their summary (pure functions, no training)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from braintumor.constants import CLASS_NAMES
from braintumor.evaluation.crossval import (
    CrossValidationError,
    assign_folds,
    fold_splits,
    render_cv_report,
    score_fold,
    summarize_folds,
)


def _splits(seed: int = 0, clusters_per_class: int = 12) -> pd.DataFrame:
    """A splits table whose kept rows hold whole clusters of 1-4 images (as with
    keep_one_per_cluster false), plus redundant copies and quarantined rows."""
    rng = np.random.default_rng(seed)
    rows, cluster = [], 0
    for label in CLASS_NAMES:
        for _ in range(clusters_per_class):
            for copy in range(int(rng.integers(1, 5))):
                rows.append((f"{label}/{cluster}-{copy}.jpg", label, cluster, "kept"))
            if rng.random() < 0.3:
                rows.append((f"{label}/{cluster}-copy.jpg", label, cluster, "redundant"))
            cluster += 1
    rows.append(("glioma/conflict.jpg", "glioma", cluster, "quarantined"))
    return pd.DataFrame(rows, columns=["path", "label", "cluster_id", "status"])


@pytest.mark.parametrize("n_folds", [2, 3, 5])
def test_grouped_folds_never_split_a_cluster_and_stay_stratified(n_folds: int) -> None:
    splits = _splits()
    folds = assign_folds(splits, n_folds, seed=7)
    kept = folds[folds["status"] == "kept"]
    assert len(kept) == (splits["status"] == "kept").sum()
    assert set(kept["grouped_fold"]) == set(range(n_folds))
    # No duplicate cluster in two folds.
    assert (kept.groupby("cluster_id")["grouped_fold"].nunique() == 1).all()
    # Copies and quarantined images never enter the grouped scheme.
    assert (folds.loc[folds["status"] == "redundant", "grouped_fold"] == -1).all()
    assert "glioma/conflict.jpg" not in set(folds["path"])
    # Stratified: each fold holds each class's share, give or take one cluster (<= 4 images).
    counts = pd.crosstab(kept["label"], kept["grouped_fold"])
    expected = counts.sum(axis=1).to_numpy()[:, None] / n_folds
    assert np.abs(counts.to_numpy() - expected).max() <= 4


def test_ungrouped_folds_take_every_copy_and_may_split_clusters() -> None:
    splits = _splits()
    folds = assign_folds(splits, 5, seed=7)
    usable = splits["status"] != "quarantined"
    assert (folds["ungrouped_fold"] >= 0).all() and len(folds) == usable.sum()
    counts = pd.crosstab(folds["label"], folds["ungrouped_fold"])
    assert (counts.max(axis=1) - counts.min(axis=1)).max() <= 1  # StratifiedKFold's balance
    # What the research's k-fold did: some cluster has images on both sides of a fold.
    assert (folds.groupby("cluster_id")["ungrouped_fold"].nunique() > 1).any()


def test_fold_counts_that_cannot_work_are_refused_in_words() -> None:
    splits = _splits(clusters_per_class=3)
    for bad in (1, 0, -2):
        with pytest.raises(CrossValidationError, match="at least 2"):
            assign_folds(splits, bad)
    with pytest.raises(CrossValidationError, match=r"--folds 4 needs at least 4 .* has 3"):
        assign_folds(splits, 4)


@pytest.mark.parametrize("scheme", ["grouped", "ungrouped"])
def test_one_fold_holds_out_its_images_and_draws_validation_from_the_rest(scheme: str) -> None:
    folds = assign_folds(_splits(), 3, seed=1)
    column = f"{scheme}_fold"
    table = fold_splits(folds, scheme, 1, val_fraction=0.2, seed=1)
    assert set(table["status"]) == {"kept"}
    test_paths = set(table.loc[table["split"] == "test", "path"])
    assert test_paths == set(folds.loc[folds[column] == 1, "path"])
    for split in ("train", "val"):
        assert set(table.loc[table["split"] == split, "label"]) == set(CLASS_NAMES)
    share = (table["split"] == "val").sum() / (table["split"] != "test").sum()
    assert 0.1 < share < 0.35
    if scheme == "grouped":  # no cluster on two sides of any split
        assert (table.groupby("cluster_id")["split"].nunique() == 1).all()


def test_score_fold_counts_recall_per_class() -> None:
    y = np.array([0, 0, 1, 1, 2, 3])
    probs = np.eye(4)[[0, 1, 1, 1, 2, 2]]
    scores = score_fold(y, probs)
    assert scores["n"] == 6
    assert scores["recall"] == {"glioma": 0.5, "meningioma": 1.0, "notumor": 1.0, "pituitary": 0.0}
    from sklearn.metrics import f1_score

    assert scores["weighted_f1"] == pytest.approx(f1_score(y, probs.argmax(1), average="weighted"))
    assert scores["macro_f1"] == pytest.approx(f1_score(y, probs.argmax(1), average="macro"))


def _result(scheme: str, fold: int, f1: float) -> dict:
    recall = dict.fromkeys(CLASS_NAMES, f1)
    return {
        "scheme": scheme,
        "fold": fold,
        "images": {"train": 10, "val": 2, "test": 5},
        "weighted_f1": f1,
        "macro_f1": f1 - 0.1,
        "recall": recall,
    }


def test_summary_gives_mean_and_sd_per_scheme_and_the_leakage_gap() -> None:
    results = [_result("grouped", i, f) for i, f in enumerate([0.7, 0.8, 0.9])]
    results += [_result("ungrouped", i, f) for i, f in enumerate([0.9, 0.95, 1.0])]
    summary = summarize_folds(results)
    grouped = summary["schemes"]["grouped"]
    assert summary["folds"] == 3 and grouped["test_images"] == 15
    assert grouped["weighted_f1"]["mean"] == pytest.approx(0.8)
    assert grouped["weighted_f1"]["std"] == pytest.approx(0.1)  # sample SD (ddof=1)
    assert grouped["recall"]["notumor"]["values"] == pytest.approx([0.7, 0.8, 0.9])
    assert summary["gap"]["weighted_f1"] == pytest.approx(0.15)
    html = render_cv_report(summary, "CV", {"data": "manifest:abc"})
    assert "0.8000 ± 0.1000" in html and "+0.1500" in html and "manifest:abc" in html
    with pytest.raises(CrossValidationError, match="folds"):
        summarize_folds([*results[:-1], _result("ungrouped", 0, 0.5)])
