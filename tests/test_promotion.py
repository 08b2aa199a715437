"""Every branch of decide_promotion."""

from __future__ import annotations

import pytest

from braintumor.constants import CLASS_NAMES
from braintumor.promotion import (
    CandidateScores,
    IncumbentComparison,
    PromotionPolicy,
    decide_promotion,
)

SUPPORT = dict.fromkeys(CLASS_NAMES, 50)


def _candidate(f1: float = 0.95, recall: float = 0.93, **overrides: float) -> CandidateScores:
    recalls = {name: recall for name in CLASS_NAMES} | overrides
    return CandidateScores(weighted_f1=f1, class_recall=recalls, class_support=SUPPORT)


def _incumbent(delta: float, low: float | None = None, p: float = 0.2) -> IncumbentComparison:
    low = delta - 0.02 if low is None else low
    return IncumbentComparison("7", 0.95 - delta, delta, (low, delta + 0.02), p, "paired_bootstrap")


def test_first_model_passing_every_floor_goes_to_staging() -> None:
    decision = decide_promotion(_candidate(), None, PromotionPolicy(), CLASS_NAMES)
    assert decision.passed and decision.target_stage == "staging"
    assert "no production model" in " ".join(decision.reasons)
    assert decision.summary().startswith("PROMOTE to staging")


def test_policy_can_promote_straight_to_production() -> None:
    policy = PromotionPolicy(promote_to="production")
    assert decide_promotion(_candidate(), None, policy, CLASS_NAMES).target_stage == "production"


def test_weighted_f1_below_the_floor_is_rejected() -> None:
    decision = decide_promotion(_candidate(f1=0.89), None, PromotionPolicy(), CLASS_NAMES)
    assert not decision.passed and decision.target_stage is None
    assert decision.reasons == ["weighted F1 0.8900 < floor 0.9000"]


def test_one_class_recall_below_the_floor_is_rejected_and_named() -> None:
    decision = decide_promotion(_candidate(glioma=0.80), None, PromotionPolicy(), CLASS_NAMES)
    assert not decision.passed
    assert decision.reasons == ["recall of glioma 0.8000 < floor 0.8500 (50 images)"]


def test_a_class_missing_from_the_test_set_cannot_be_certified() -> None:
    candidate = CandidateScores(0.95, {n: 0.95 for n in CLASS_NAMES}, SUPPORT | {"notumor": 0})
    decision = decide_promotion(candidate, None, PromotionPolicy(), CLASS_NAMES)
    assert not decision.passed
    assert decision.reasons == ["no test images of class notumor: its recall cannot be checked"]


@pytest.mark.parametrize(("delta", "passed"), [(0.01, True), (-0.004, True), (-0.006, False)])
def test_regression_margin_on_the_point_estimate(delta: float, passed: bool) -> None:
    decision = decide_promotion(_candidate(), _incumbent(delta), PromotionPolicy(), CLASS_NAMES)
    assert decision.passed is passed
    regression = next(c for c in decision.checks if c.name == "no_regression")
    assert regression.passed is passed and "p=0.2" in regression.detail


def test_non_inferiority_uses_the_confidence_bound_when_required() -> None:
    policy = PromotionPolicy(require_significance=True)
    assert not decide_promotion(
        _candidate(), _incumbent(0.002, low=-0.01), policy, CLASS_NAMES
    ).passed
    assert decide_promotion(_candidate(), _incumbent(0.01, low=-0.004), policy, CLASS_NAMES).passed


def test_all_failures_are_reported_together() -> None:
    decision = decide_promotion(
        _candidate(f1=0.5, recall=0.5), _incumbent(-0.1), PromotionPolicy(), CLASS_NAMES
    )
    assert len(decision.reasons) == 1 + len(CLASS_NAMES) + 1
    as_dict = decision.to_dict()
    assert as_dict["passed"] is False and as_dict["summary"].startswith("REJECT")


def test_a_floor_above_one_rejects_everything() -> None:
    policy = PromotionPolicy(min_weighted_f1=1.01)
    assert not decide_promotion(_candidate(f1=1.0, recall=1.0), None, policy, CLASS_NAMES).passed


def test_candidate_scores_come_from_the_evaluation_metrics() -> None:
    metrics = {
        "weighted_f1": 0.91,
        "per_class": {
            "glioma": {"recall": 0.9, "support": 10},
            "notumor": {"recall": 0.0, "support": 0},
        },
    }
    scores = CandidateScores.from_metrics(metrics)
    assert scores.weighted_f1 == 0.91
    assert scores.class_recall == {"glioma": 0.9, "notumor": 0.0}
    assert scores.class_support == {"glioma": 10, "notumor": 0}
