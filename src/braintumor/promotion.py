"""The promotion gate: a pure decision from scores and a policy, with reasons.

Like TFX's blessing, but stricter for a medical classifier: an absolute floor on weighted F1,
a floor on every class's recall (a missed tumour costs more than a false alarm), and no
regression against the production model re-scored on the *same* test set.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Stage = Literal["staging", "production"]


class PromotionPolicy(BaseModel):
    """Gate thresholds (from the run config's `gate` section)."""

    model_config = ConfigDict(extra="forbid")

    min_weighted_f1: float = Field(0.90, ge=0)
    min_class_recall: float = Field(0.85, ge=0)
    max_regression: float = Field(0.005, ge=0)
    # False: the point estimate of the paired difference must be >= -max_regression.
    # True: its 95% CI lower bound must be (a non-inferiority test; needs large test sets).
    require_significance: bool = False
    # Where a model that passes goes: staging, or straight to production.
    promote_to: Stage = "staging"
    # Exit code of `braintumor train` when the gate rejects the candidate (0: not an error).
    exit_code_on_reject: int = Field(0, ge=0, le=255)


@dataclass(frozen=True)
class CandidateScores:
    """The candidate's test-set scores."""

    weighted_f1: float
    class_recall: dict[str, float]
    class_support: dict[str, int]

    @classmethod
    def from_metrics(cls, metrics: dict) -> CandidateScores:
        """From `evaluation.metrics.evaluate`'s output."""
        per_class = metrics["per_class"]
        return cls(
            weighted_f1=metrics["weighted_f1"],
            class_recall={name: values["recall"] for name, values in per_class.items()},
            class_support={name: values["support"] for name, values in per_class.items()},
        )


@dataclass(frozen=True)
class IncumbentComparison:
    """The production model re-scored on the candidate's test set, and the paired test."""

    version: str
    weighted_f1: float
    delta: float  # candidate - incumbent, weighted F1, same images
    delta_ci: tuple[float, float]
    p_value: float  # one-sided: probability of a delta this large if the candidate were worse
    test: str  # e.g. "paired_bootstrap" or "mcnemar"


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Decision:
    passed: bool
    target_stage: Stage | None
    checks: list[Check] = field(default_factory=list)

    @property
    def reasons(self) -> list[str]:
        """Why it failed (failed checks), or why it passed (all checks)."""
        failed = [c.detail for c in self.checks if not c.passed]
        return failed if failed else [c.detail for c in self.checks]

    def summary(self) -> str:
        verdict = f"PROMOTE to {self.target_stage}" if self.passed else "REJECT"
        return f"{verdict}: " + "; ".join(self.reasons)

    def to_dict(self) -> dict:
        return {**asdict(self), "reasons": self.reasons, "summary": self.summary()}


def decide_promotion(
    candidate: CandidateScores,
    incumbent: IncumbentComparison | None,
    policy: PromotionPolicy,
    class_names: tuple[str, ...] | list[str],
) -> Decision:
    """Decide whether `candidate` may replace `incumbent` (None: no production model yet)."""
    checks = [
        Check(
            "weighted_f1_floor",
            candidate.weighted_f1 >= policy.min_weighted_f1,
            f"weighted F1 {candidate.weighted_f1:.4f} "
            f"{'>=' if candidate.weighted_f1 >= policy.min_weighted_f1 else '<'} "
            f"floor {policy.min_weighted_f1:.4f}",
        )
    ]
    for name in class_names:
        support = candidate.class_support.get(name, 0)
        if support == 0:
            checks.append(
                Check(
                    f"recall_{name}",
                    False,
                    f"no test images of class {name}: its recall cannot be checked",
                )
            )
            continue
        recall = candidate.class_recall[name]
        ok = recall >= policy.min_class_recall
        checks.append(
            Check(
                f"recall_{name}",
                ok,
                f"recall of {name} {recall:.4f} {'>=' if ok else '<'} floor "
                f"{policy.min_class_recall:.4f} ({support} images)",
            )
        )
    if incumbent is None:
        checks.append(Check("no_regression", True, "no production model to compare with"))
    else:
        bound = incumbent.delta_ci[0] if policy.require_significance else incumbent.delta
        what = "95% CI lower bound of the change" if policy.require_significance else "change"
        ok = bound >= -policy.max_regression
        checks.append(
            Check(
                "no_regression",
                ok,
                f"{what} in weighted F1 vs production {incumbent.version} "
                f"({incumbent.weighted_f1:.4f}) is {bound:+.4f}, "
                f"{'within' if ok else 'beyond'} the margin -{policy.max_regression:.4f} "
                f"({incumbent.test}, delta CI [{incumbent.delta_ci[0]:+.4f}, "
                f"{incumbent.delta_ci[1]:+.4f}], p={incumbent.p_value:.3g})",
            )
        )
    passed = all(check.passed for check in checks)
    return Decision(passed, policy.promote_to if passed else None, checks)
