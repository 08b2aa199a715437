"""Every branch of decide_promotion, the policy it is made under, and rollback_target."""

from __future__ import annotations

import pytest

from braintumor.constants import CLASS_NAMES
from braintumor.promotion import (
    CandidateScores,
    GatePolicy,
    IncumbentComparison,
    NotCompared,
    ProductionRecord,
    PromotionPolicy,
    RollbackError,
    decide_promotion,
    effective_policy,
    rollback_target,
)

SUPPORT = dict.fromkeys(CLASS_NAMES, 50)
PRODUCT = PromotionPolicy(
    min_weighted_f1=0.90, min_class_recall=0.85, max_regression=0.005, min_comparison_images=100
)


def _policy(**changes) -> GatePolicy:
    return GatePolicy(PRODUCT.model_copy(update=changes))


def _candidate(f1: float = 0.95, recall: float = 0.93, **overrides: float) -> CandidateScores:
    recalls = {name: recall for name in CLASS_NAMES} | overrides
    return CandidateScores(weighted_f1=f1, class_recall=recalls, class_support=SUPPORT)


def _incumbent(delta: float, low: float | None = None, p: float = 0.2) -> IncumbentComparison:
    low = delta - 0.02 if low is None else low
    return IncumbentComparison("7", 0.95 - delta, delta, (low, delta + 0.02), p, "paired_bootstrap")


def test_first_model_passing_every_floor_goes_to_staging() -> None:
    decision = decide_promotion(_candidate(), None, _policy(), CLASS_NAMES)
    assert decision.passed and decision.target_stage == "staging"
    assert "no production model" in " ".join(decision.reasons)
    assert decision.summary().startswith("PROMOTE to staging")


def test_policy_can_promote_straight_to_production() -> None:
    decision = decide_promotion(_candidate(), None, _policy(), CLASS_NAMES, "production")
    assert decision.target_stage == "production"


def test_weighted_f1_below_the_floor_is_rejected() -> None:
    decision = decide_promotion(_candidate(f1=0.89), None, _policy(), CLASS_NAMES)
    assert not decision.passed and decision.target_stage is None
    assert decision.reasons == ["weighted F1 0.8900 < floor 0.9000"]


def test_one_class_recall_below_the_floor_is_rejected_and_named() -> None:
    decision = decide_promotion(_candidate(glioma=0.80), None, _policy(), CLASS_NAMES)
    assert not decision.passed
    assert decision.reasons == ["recall of glioma 0.8000 < floor 0.8500 (50 images)"]


def test_a_class_missing_from_the_test_set_cannot_be_certified() -> None:
    candidate = CandidateScores(0.95, {n: 0.95 for n in CLASS_NAMES}, SUPPORT | {"notumor": 0})
    decision = decide_promotion(candidate, None, _policy(), CLASS_NAMES)
    assert not decision.passed
    assert decision.reasons == ["no test images of class notumor: its recall cannot be checked"]


@pytest.mark.parametrize(("delta", "passed"), [(0.01, True), (-0.004, True), (-0.006, False)])
def test_regression_margin_on_the_point_estimate(delta: float, passed: bool) -> None:
    decision = decide_promotion(_candidate(), _incumbent(delta), _policy(), CLASS_NAMES)
    assert decision.passed is passed
    regression = next(c for c in decision.checks if c.name == "no_regression")
    assert regression.passed is passed and "p=0.2" in regression.detail


def test_non_inferiority_uses_the_confidence_bound_when_required() -> None:
    policy = _policy(require_significance=True)
    assert not decide_promotion(
        _candidate(), _incumbent(0.002, low=-0.01), policy, CLASS_NAMES
    ).passed
    assert decide_promotion(_candidate(), _incumbent(0.01, low=-0.004), policy, CLASS_NAMES).passed


def test_all_failures_are_reported_together() -> None:
    decision = decide_promotion(
        _candidate(f1=0.5, recall=0.5), _incumbent(-0.1), _policy(), CLASS_NAMES
    )
    assert len(decision.reasons) == 1 + len(CLASS_NAMES) + 1
    as_dict = decision.to_dict()
    assert as_dict["passed"] is False and as_dict["summary"].startswith("REJECT")


def test_a_floor_above_one_rejects_everything() -> None:
    policy = _policy(min_weighted_f1=1.01)
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


def test_the_decision_names_the_policy_it_was_made_under() -> None:
    decision = decide_promotion(_candidate(), None, _policy(), CLASS_NAMES)
    digest = PRODUCT.digest()
    assert decision.policy["name"] == f"params.yaml:gate@{digest}"
    assert decision.policy["thresholds"]["min_weighted_f1"] == 0.90
    assert decision.summary().startswith(f"PROMOTE to staging (policy params.yaml:gate@{digest})")
    assert decision.to_dict()["policy"]["repository"] is True


def test_the_policy_digest_follows_the_thresholds_only() -> None:
    same = PromotionPolicy(**PRODUCT.model_dump())
    assert same.digest() == PRODUCT.digest() and len(PRODUCT.digest()) == 12
    assert PRODUCT.model_copy(update={"min_class_recall": 0.8}).digest() != PRODUCT.digest()


def test_overrides_that_change_nothing_keep_the_repository_policy() -> None:
    unchanged = effective_policy(PRODUCT, {"min_weighted_f1": 0.90})
    assert unchanged.repository and unchanged.source == "params.yaml:gate"
    assert effective_policy(PRODUCT, None).repository


def test_a_relaxed_policy_stages_at_most() -> None:
    relaxed = effective_policy(
        PRODUCT, {"min_weighted_f1": 0.0, "min_class_recall": 0.0}, overridden_by="smoke.yaml"
    )
    assert not relaxed.repository and relaxed.policy.min_class_recall == 0.0
    assert relaxed.policy.max_regression == PRODUCT.max_regression  # not overridden
    assert relaxed.name.startswith("params.yaml:gate overridden by smoke.yaml@")
    weak = _candidate(f1=0.3, recall=0.2)
    decision = decide_promotion(weak, None, relaxed, CLASS_NAMES, "production")
    assert decision.passed and decision.target_stage == "staging"
    assert "is not the repository's: the model stops at staging" in decision.summary()
    # The repository's policy, as `braintumor promote` applies it, refuses the same scores.
    assert not decide_promotion(weak, None, _policy(), CLASS_NAMES, "production").passed


def test_the_policy_has_no_threshold_defaults() -> None:
    with pytest.raises(ValueError, match="min_weighted_f1"):
        PromotionPolicy(min_class_recall=0.85, max_regression=0.005)


HISTORY = [
    ProductionRecord(1, "2026-01-01T00:00:00+00:00"),
    ProductionRecord(2),  # never in production
    ProductionRecord(3, "2026-02-01T00:00:00+00:00"),
    ProductionRecord(4, "2026-03-01T00:00:00+00:00"),
]


def test_rollback_goes_to_the_version_in_production_before() -> None:
    assert rollback_target(HISTORY, current=4) == 3


def test_rollback_skips_versions_production_was_rolled_back_from() -> None:
    # 4 was rolled back to 3; 3 is current now: the next rollback goes to 1, not back to 4.
    history = [
        ProductionRecord(1, "2026-01-01T00:00:00+00:00"),
        ProductionRecord(3, "2026-03-02T00:00:00+00:00"),
        ProductionRecord(4, "2026-03-01T00:00:00+00:00", "2026-03-02T00:00:01+00:00"),
    ]
    assert rollback_target(history, current=3) == 1
    # A version promoted again after its rollback is a candidate again.
    history[2] = ProductionRecord(4, "2026-03-05T00:00:00+00:00", "2026-03-02T00:00:01+00:00")
    history[1] = ProductionRecord(3, "2026-03-06T00:00:00+00:00")
    assert rollback_target(history, current=3) == 4


def test_rollback_to_a_named_version_needs_it_to_have_served() -> None:
    assert rollback_target(HISTORY, current=4, to=1) == 1
    with pytest.raises(RollbackError, match="version 2 was never in production"):
        rollback_target(HISTORY, current=4, to=2)
    with pytest.raises(RollbackError, match="already in production"):
        rollback_target(HISTORY, current=4, to=4)


def test_rollback_refuses_when_there_is_nothing_to_go_back_to() -> None:
    with pytest.raises(RollbackError, match="no version is in production"):
        rollback_target(HISTORY, current=None)
    with pytest.raises(RollbackError, match="give --to N"):
        rollback_target([ProductionRecord(1, "2026-01-01T00:00:00+00:00")], current=1)


def test_rollback_compares_times_with_and_without_a_zone() -> None:
    history = [
        ProductionRecord(1, "2026-01-01T00:00:00"),  # from a version's creation time
        ProductionRecord(2, "2026-02-01T00:00:00+00:00"),
        ProductionRecord(3, "2026-03-01T00:00:00"),
    ]
    assert rollback_target(history, current=3) == 2


def test_the_per_source_floor_is_off_by_default_and_names_the_failing_source() -> None:
    by_source = {"kaggle": (0.95, 300), "hospital-a": (0.71, 40)}
    candidate = CandidateScores(0.93, dict.fromkeys(CLASS_NAMES, 0.9), SUPPORT, by_source)
    assert decide_promotion(candidate, None, _policy(), CLASS_NAMES).passed  # off
    decision = decide_promotion(candidate, None, _policy(min_source_weighted_f1=0.8), CLASS_NAMES)
    assert not decision.passed
    assert decision.reasons == [
        "weighted F1 on source hospital-a 0.7100 < floor 0.8000 (40 images)"
    ]
    # No per-source figures: the floor cannot be certified, so it does not pass silently.
    unsourced = decide_promotion(
        _candidate(), None, _policy(min_source_weighted_f1=0.8), CLASS_NAMES
    )
    assert not unsourced.passed and "no per-source test figures" in unsourced.reasons[0]


def test_candidate_scores_read_the_per_source_figures_of_the_test_metrics() -> None:
    per_class = {n: {"recall": 0.9, "support": 10} for n in CLASS_NAMES}
    metrics = {
        "weighted_f1": 0.9,
        "per_class": per_class,
        "by_source": {"kaggle": {"weighted_f1": 0.92, "n": 30}},
    }
    assert CandidateScores.from_metrics(metrics).source_weighted_f1 == {"kaggle": (0.92, 30)}


def test_a_comparison_that_could_not_run_is_said_and_stops_at_staging() -> None:
    too_few = NotCompared("7", 12, "only 12 of the 400 test images were seen by neither model")
    staged = decide_promotion(_candidate(), too_few, _policy(), CLASS_NAMES)
    assert staged.passed and staged.target_stage == "staging"
    check = next(c for c in staged.checks if c.name == "no_regression")
    assert not check.ran and "NOT RUN against production 7: only 12 of the 400" in check.detail
    assert "NOT RUN" in staged.summary()
    refused = decide_promotion(_candidate(), too_few, _policy(), CLASS_NAMES, "production")
    assert not refused.passed and refused.target_stage is None
    assert any("NOT RUN" in reason for reason in refused.reasons)
    assert refused.to_dict()["checks"][-1]["ran"] is False


def test_the_comparison_says_on_how_many_images_it_ran() -> None:
    incumbent = IncumbentComparison("7", 0.93, 0.02, (0.0, 0.04), 0.1, "paired", 150, 266)
    decision = decide_promotion(_candidate(), incumbent, _policy(), CLASS_NAMES)
    assert decision.passed
    assert "on 150 test images neither model trained on, 266 left out" in decision.reasons[-1]


def test_source_metrics_flatten_each_source_and_drop_what_it_cannot_define() -> None:
    from braintumor_zenml.registry import source_metrics

    figures = {
        "weighted_f1": 0.9,
        "weighted_f1_ci": [0.8, 0.95],
        "per_class": {"glioma": {"recall": 0.9, "support": 10}},
        "n": 10,
        "roc_auc_macro": float("nan"),  # one class only
    }
    flat = source_metrics({"by_source": {"mine": figures}})
    assert flat == {
        "mine": {
            "weighted_f1": 0.9,
            "weighted_f1_ci_low": 0.8,
            "weighted_f1_ci_high": 0.95,
            "recall_glioma": 0.9,
            "images": 10.0,
        }
    }
    assert source_metrics({"weighted_f1": 0.9}) == {}
