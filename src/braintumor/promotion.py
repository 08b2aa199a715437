"""The promotion gate: a pure decision from scores and a policy, with reasons.

Like TFX's blessing, but stricter for a medical classifier: an absolute floor on weighted F1,
a floor on every class's recall (a missed tumour costs more than a false alarm), and no
regression against the production model re-scored on the *same* test images, restricted to
those that neither model trained on. With fewer such images than the policy's
`min_comparison_images`, the no-regression check is not run: the decision says so, and such a
model can reach staging, never production.

The policy is the repository's: params.yaml `gate:` (versioned with the code). A run config
may override it for its own runs (the smoke profile zeroes the floors to exercise the
plumbing); a model gated by anything but the repository's policy stops at staging, and
`braintumor promote` re-checks it with the repository's policy of the day. Every decision
names the policy it was made under (source and content digest).

Rollback (`rollback_target`) is decided here too, from the production history the registry
recorded on each version.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Stage = Literal["staging", "production"]
REPOSITORY_POLICY_SOURCE = "params.yaml:gate"


class PromotionPolicy(BaseModel):
    """Gate thresholds: params.yaml `gate:`, the one place they are declared."""

    model_config = ConfigDict(extra="forbid")

    min_weighted_f1: float = Field(ge=0)
    min_class_recall: float = Field(ge=0)
    max_regression: float = Field(ge=0)
    # False: the point estimate of the paired difference must be >= -max_regression.
    # True: its 95% CI lower bound must be (a non-inferiority test; needs large test sets).
    require_significance: bool = False
    # Weighted F1 floor for every source's test images (None: off). Pooled figures can hide a
    # source the model fails on, e.g. a new hospital's scanner.
    min_source_weighted_f1: float | None = Field(None, ge=0)
    # The comparison with production uses only test images neither model trained on (their
    # recorded splits); below this many the no-regression check is not run.
    min_comparison_images: int = Field(ge=1)

    def digest(self) -> str:
        """A short content hash: two policies with the same thresholds have the same one."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]


class PolicyOverrides(BaseModel):
    """A run config's changes to the repository's policy, for its own runs only."""

    model_config = ConfigDict(extra="forbid")

    min_weighted_f1: float | None = Field(None, ge=0)
    min_class_recall: float | None = Field(None, ge=0)
    max_regression: float | None = Field(None, ge=0)
    require_significance: bool | None = None
    min_source_weighted_f1: float | None = Field(None, ge=0)
    min_comparison_images: int | None = Field(None, ge=1)


@dataclass(frozen=True)
class GatePolicy:
    """The policy a decision is made under, and where it comes from."""

    policy: PromotionPolicy
    source: str = REPOSITORY_POLICY_SOURCE
    # False when a run config changed the repository's thresholds: such a decision can
    # stage a model, never put it in production.
    repository: bool = True

    @property
    def name(self) -> str:
        return f"{self.source}@{self.policy.digest()}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "digest": self.policy.digest(),
            "repository": self.repository,
            "thresholds": self.policy.model_dump(mode="json"),
        }


def effective_policy(
    repository: PromotionPolicy,
    overrides: PolicyOverrides | dict[str, Any] | None = None,
    overridden_by: str = "the run config",
    source: str = REPOSITORY_POLICY_SOURCE,
) -> GatePolicy:
    """The repository's policy with a run's overrides applied; still the repository's when the
    overrides change no threshold."""
    if isinstance(overrides, dict):
        overrides = PolicyOverrides(**overrides)
    changes = overrides.model_dump(exclude_none=True) if overrides else {}
    policy = PromotionPolicy(**{**repository.model_dump(), **changes})
    if policy == repository:
        return GatePolicy(repository, source, repository=True)
    return GatePolicy(policy, f"{source} overridden by {overridden_by}", repository=False)


@dataclass(frozen=True)
class CandidateScores:
    """The candidate's test-set scores."""

    weighted_f1: float
    class_recall: dict[str, float]
    class_support: dict[str, int]
    # Per source: (weighted F1, test images); empty when the test rows carry no source.
    source_weighted_f1: dict[str, tuple[float, int]] = field(default_factory=dict)

    @classmethod
    def from_metrics(cls, metrics: dict) -> CandidateScores:
        """From `evaluation.metrics.evaluate`'s output (with `by_source` when present)."""
        per_class = metrics["per_class"]
        return cls(
            weighted_f1=metrics["weighted_f1"],
            class_recall={name: values["recall"] for name, values in per_class.items()},
            class_support={name: values["support"] for name, values in per_class.items()},
            source_weighted_f1={
                name: (values["weighted_f1"], values["n"])
                for name, values in (metrics.get("by_source") or {}).items()
            },
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
    images: int | None = None  # test images compared (neither model trained on them)
    excluded: int = 0  # candidate test images left out: production trained on a copy


@dataclass(frozen=True)
class NotCompared:
    """Production could not be compared with the candidate: too few test images that neither
    trained on, or production has no recorded split. The no-regression check is not run."""

    version: str
    images: int
    reason: str


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str
    ran: bool = True  # False: the check could not be made (its detail says why)


@dataclass(frozen=True)
class Decision:
    passed: bool
    target_stage: Stage | None
    checks: list[Check] = field(default_factory=list)
    policy: dict[str, Any] = field(default_factory=dict)  # GatePolicy.to_dict()

    @property
    def reasons(self) -> list[str]:
        """Why it failed (failed checks), or why it passed (all checks)."""
        failed = [c.detail for c in self.checks if not c.passed]
        return failed if failed else [c.detail for c in self.checks]

    def summary(self) -> str:
        verdict = f"PROMOTE to {self.target_stage}" if self.passed else "REJECT"
        under = f" (policy {self.policy['name']})" if self.policy else ""
        return f"{verdict}{under}: " + "; ".join(self.reasons)

    def to_dict(self) -> dict:
        return {**asdict(self), "reasons": self.reasons, "summary": self.summary()}


def decide_promotion(
    candidate: CandidateScores,
    incumbent: IncumbentComparison | NotCompared | None,
    gate_policy: GatePolicy,
    class_names: tuple[str, ...] | list[str],
    promote_to: Stage = "staging",
) -> Decision:
    """Decide whether `candidate` may replace `incumbent` (None: no production model yet) and
    go to `promote_to`; a policy that is not the repository's stages at most."""
    policy = gate_policy.policy
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
    floor = policy.min_source_weighted_f1
    if floor is not None:
        if not candidate.source_weighted_f1:
            checks.append(
                Check(
                    "source_floor", False, "no per-source test figures: the floor cannot be checked"
                )
            )
        for source, (f1, n) in sorted(candidate.source_weighted_f1.items()):
            ok = f1 >= floor
            checks.append(
                Check(
                    f"source_{source}",
                    ok,
                    f"weighted F1 on source {source} {f1:.4f} {'>=' if ok else '<'} floor "
                    f"{floor:.4f} ({n} images)",
                )
            )
    if incumbent is None:
        checks.append(Check("no_regression", True, "no production model to compare with"))
    elif isinstance(incumbent, NotCompared):
        to_production = promote_to == "production"
        checks.append(
            Check(
                "no_regression",
                not to_production,
                f"no-regression check NOT RUN against production {incumbent.version}: "
                f"{incumbent.reason}; "
                + (
                    "a model goes to production only after it"
                    if to_production
                    else "staging at most"
                ),
                ran=False,
            )
        )
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
                f"{incumbent.delta_ci[1]:+.4f}], p={incumbent.p_value:.3g}"
                + (
                    f"; on {incumbent.images} test images neither model trained on, "
                    f"{incumbent.excluded} left out"
                    if incumbent.images is not None
                    else ""
                )
                + ")",
            )
        )
    if promote_to == "production" and not gate_policy.repository:
        checks.append(
            Check(
                "repository_policy",
                True,
                f"policy {gate_policy.name} is not the repository's: the model stops at staging",
            )
        )
        promote_to = "staging"
    passed = all(check.passed for check in checks)
    return Decision(passed, promote_to if passed else None, checks, gate_policy.to_dict())


# --- rollback -------------------------------------------------------------------------------


class RollbackError(ValueError):
    """A rollback that cannot be done as asked; the message says why."""


@dataclass(frozen=True)
class ProductionRecord:
    """What the registry recorded on one model version about its time in production."""

    version: int
    production_since: str | None = None  # ISO time it last entered production
    rolled_back_at: str | None = None  # ISO time production was last rolled back from it


def _time(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def rollback_target(
    records: list[ProductionRecord], current: int | None, to: int | None = None
) -> int:
    """The version production goes back to: `to` when given (it must have been in production
    before), else the version that was in production before `current`, skipping versions
    production was rolled back from since they were last promoted."""
    if current is None:
        raise RollbackError("no version is in production: there is nothing to roll back")
    by_version = {record.version: record for record in records}
    if to is not None:
        if to == current:
            raise RollbackError(f"version {to} is already in production")
        if to not in by_version or by_version[to].production_since is None:
            raise RollbackError(
                f"version {to} was never in production: `braintumor promote --version {to}` "
                "moves it there after re-checking the gate"
            )
        return to
    earlier = [
        record
        for record in records
        if record.version != current
        and record.production_since is not None
        and not (
            record.rolled_back_at is not None
            and _time(record.rolled_back_at) >= _time(record.production_since)
        )
    ]
    if not earlier:
        raise RollbackError(
            f"no version was in production before version {current} (none recorded): give --to N"
        )
    return max(earlier, key=lambda record: _time(record.production_since)).version
