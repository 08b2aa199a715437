"""Metrics agree with scikit-learn; bootstrap, paired comparison and McNemar behave."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from braintumor.evaluation.metrics import (
    MetricsError,
    accuracy,
    balanced_accuracy,
    bootstrap_ci,
    confusion_matrix,
    evaluate,
    evaluate_by_group,
    expected_calibration_error,
    macro_f1,
    mcnemar,
    paired_bootstrap_delta,
    reliability_table,
    weighted_f1,
)

NAMES = ("glioma", "meningioma", "notumor", "pituitary")


def fixed_probs(n: int = 200, seed: int = 0, skill: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.choice(4, size=n, p=[0.3, 0.3, 0.15, 0.25])
    logits = rng.normal(size=(n, 4))
    logits[np.arange(n), y] += skill
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, probs


def test_metrics_agree_with_scikit_learn_on_fixed_arrays() -> None:
    y, probs = fixed_probs()
    pred = probs.argmax(axis=1)
    assert weighted_f1(y, pred, 4) == pytest.approx(skm.f1_score(y, pred, average="weighted"))
    assert macro_f1(y, pred, 4) == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert accuracy(y, pred) == pytest.approx(skm.accuracy_score(y, pred))
    assert balanced_accuracy(y, pred, 4) == pytest.approx(skm.balanced_accuracy_score(y, pred))
    np.testing.assert_array_equal(
        confusion_matrix(y, pred, 4), skm.confusion_matrix(y, pred, labels=range(4))
    )
    report = evaluate(y, probs, NAMES, n_boot=200)
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y, pred, labels=range(4), zero_division=0
    )
    for i, name in enumerate(NAMES):
        row = report["per_class"][name]
        assert row["precision"] == pytest.approx(precision[i])
        assert row["recall"] == pytest.approx(recall[i])
        assert row["f1"] == pytest.approx(f1[i])
        assert row["support"] == support[i]
        assert row["roc_auc"] == pytest.approx(skm.roc_auc_score(y == i, probs[:, i]))
    assert report["roc_auc_macro"] == pytest.approx(
        skm.roc_auc_score(y, probs, multi_class="ovr", average="macro")
    )
    assert report["weighted_f1"] == pytest.approx(skm.f1_score(y, pred, average="weighted"))
    low, high = report["weighted_f1_ci"]
    assert low < report["weighted_f1"] < high


def test_metrics_with_a_class_missing_match_scikit_learn_defaults() -> None:
    y = np.array([0, 0, 1, 1, 3, 3, 3])  # no class 2 in the truth
    pred = np.array([0, 2, 1, 0, 3, 3, 1])
    assert weighted_f1(y, pred, 4) == pytest.approx(skm.f1_score(y, pred, average="weighted"))
    assert macro_f1(y, pred, 4) == pytest.approx(skm.f1_score(y, pred, average="macro"))
    probs = np.eye(4)[pred] * 0.7 + 0.075
    report = evaluate(y, probs, NAMES, n_boot=50)
    assert report["per_class"]["notumor"]["roc_auc"] is None
    assert report["per_class"]["notumor"]["support"] == 0


def test_expected_calibration_error_on_a_hand_computed_case() -> None:
    # Two bins used: confidence 0.9 (4 images, 3 right) and 0.6 (2 images, 2 right).
    probs = np.array([[0.9, 0.1]] * 4 + [[0.6, 0.4]] * 2)
    y = np.array([0, 0, 0, 1, 0, 0])
    expected = (4 / 6) * abs(0.75 - 0.9) + (2 / 6) * abs(1.0 - 0.6)
    assert expected_calibration_error(y, probs, n_bins=10) == pytest.approx(expected)
    table = reliability_table(y, probs, n_bins=10)
    assert table["count"].sum() == 6
    perfect = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(np.array([0, 1]), perfect) == 0.0


def test_bootstrap_ci_is_reproducible_and_narrows_with_more_images() -> None:
    y, probs = fixed_probs(100)
    pred = probs.argmax(axis=1)
    assert bootstrap_ci(y, pred, seed=3) == bootstrap_ci(y, pred, seed=3)
    small = bootstrap_ci(y, pred, n_boot=400)
    y_big, probs_big = fixed_probs(2000)
    big = bootstrap_ci(y_big, probs_big.argmax(axis=1), n_boot=400)
    assert big[1] - big[0] < small[1] - small[0]


def test_paired_bootstrap_detects_a_better_model_and_not_an_identical_one() -> None:
    y, weak = fixed_probs(300, seed=1, skill=0.5)
    strong = weak.copy()
    strong[np.arange(len(y)), y] += 2.0
    strong /= strong.sum(axis=1, keepdims=True)
    better = paired_bootstrap_delta(y, strong, weak, n_boot=500)
    assert better.delta > 0.2
    assert better.ci[0] > 0
    assert better.p_value < 0.01
    delta, ci, p_value = paired_bootstrap_delta(y, weak, weak, n_boot=200)
    assert delta == 0.0 and ci == (0.0, 0.0) and p_value == 1.0


def test_mcnemar_exact_and_chi_square_branches() -> None:
    from scipy import stats

    y = np.zeros(40, dtype=int)
    a = np.zeros(40, dtype=int)
    b = np.zeros(40, dtype=int)
    b[:6] = 1  # B wrong on 6 images that A gets right
    exact = mcnemar(y, a, b)
    assert (exact.only_a_correct, exact.only_b_correct, exact.exact) == (6, 0, True)
    assert exact.p_value == pytest.approx(2 * 0.5**6)
    b[:30] = 1
    a[30:34] = 1  # 30 vs 4 discordant: chi-square with continuity correction
    result = mcnemar(y, a, b)
    assert not result.exact
    assert result.statistic == pytest.approx((abs(30 - 4) - 1) ** 2 / 34)
    assert result.p_value == pytest.approx(stats.chi2.sf(result.statistic, 1))
    assert mcnemar(y, a, a).p_value == 1.0


def test_bad_inputs_are_rejected_with_a_reason() -> None:
    with pytest.raises(MetricsError, match="labels for"):
        evaluate(np.array([0, 1]), np.full((3, 4), 0.25), NAMES)
    with pytest.raises(MetricsError, match="class names"):
        evaluate(np.array([0, 1]), np.full((2, 3), 1 / 3), NAMES)
    with pytest.raises(MetricsError, match="integers in"):
        evaluate(np.array([0, 7]), np.full((2, 4), 0.25), NAMES)
    with pytest.raises(MetricsError, match="NaN"):
        evaluate(np.array([0, 1]), np.array([[np.nan, 1, 0, 0], [0.25] * 4]), NAMES)


def test_metrics_by_source_are_the_metrics_of_each_source_subset() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 60)
    probs = rng.dirichlet(np.ones(4), 60)
    sources = np.array(["kaggle"] * 40 + ["figshare"] * 20)
    by_source = evaluate_by_group(y, probs, NAMES, sources, n_boot=50)
    assert list(by_source) == ["figshare", "kaggle"]
    for name in by_source:
        alone = evaluate(y[sources == name], probs[sources == name], NAMES, n_boot=50)
        assert by_source[name] == alone
    assert by_source["kaggle"]["n"] == 40
    with pytest.raises(MetricsError):
        evaluate_by_group(y, probs, NAMES, sources[:10])


def test_binary_model_metrics_give_sensitivity_and_specificity() -> None:
    from braintumor.constants import BINARY_CLASS_NAMES

    rng = np.random.default_rng(3)
    y = rng.choice(2, size=120, p=[0.3, 0.7])  # 0 notumor, 1 tumour
    tumour = np.clip(0.5 + 0.35 * (2 * y - 1) + rng.normal(0, 0.25, 120), 0.01, 0.99)
    probs = np.stack([1 - tumour, tumour], axis=1)
    report = evaluate(y, probs, BINARY_CLASS_NAMES, n_boot=50)
    pred = probs.argmax(axis=1)
    binary = report["tumour_vs_none"]
    assert binary["sensitivity"] == pytest.approx(skm.recall_score(y, pred, pos_label=1))
    assert binary["specificity"] == pytest.approx(skm.recall_score(y, pred, pos_label=0))
    # For a binary model they are its two classes' recall.
    assert binary["sensitivity"] == report["per_class"]["tumour"]["recall"]
    assert binary["specificity"] == report["per_class"]["notumor"]["recall"]
    assert binary["roc_auc"] == pytest.approx(skm.roc_auc_score(y, tumour))
    assert (binary["tumour_images"], binary["notumor_images"]) == ((y == 1).sum(), (y == 0).sum())
    assert report["weighted_f1"] == pytest.approx(skm.f1_score(y, pred, average="weighted"))
    assert set(report["per_class"]) == {"notumor", "tumour"}


def test_four_class_binary_view_reads_one_minus_p_notumor() -> None:
    # Image 0 is argmax notumor but its tumour probability is 0.6: called a tumour.
    probs = np.array(
        [[0.2, 0.2, 0.4, 0.2], [0.05, 0.05, 0.85, 0.05], [0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.6, 0.2]]
    )
    y = np.array([0, 2, 3, 2])  # glioma, notumor, pituitary, notumor
    binary = evaluate(y, probs, NAMES, n_boot=20)["tumour_vs_none"]
    assert binary["sensitivity"] == 1.0  # both tumours called
    assert binary["specificity"] == 1.0  # both no-tumour images at P(tumour) <= 0.5
    only_tumours = evaluate(y[[0, 2]], probs[[0, 2]], NAMES, n_boot=20)["tumour_vs_none"]
    assert only_tumours["specificity"] is None and only_tumours["roc_auc"] is None
    assert (
        evaluate(np.array([0, 1]), np.eye(3)[:2], ("a", "b", "c"), n_boot=5)["tumour_vs_none"]
        is None
    )
