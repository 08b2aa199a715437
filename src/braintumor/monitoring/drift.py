"""Drift between a reference feature table and current data, with Evidently 0.7, and a pure
decision on whether it matters.

Evidently tests every column on its own: with fewer than ~1,000 rows, the two-sample
Kolmogorov-Smirnov test for numbers (drift when p < 0.05) and chi-square / Z-test for
categories; with more, the normed Wasserstein distance (drift when >= 0.1) and Jensen-Shannon
distance. `decide_drift` then applies `DriftPolicy`: the data set has drifted when at least
`drift_share` of the columns drifted, when any `critical_columns` (default: confidence and the
share of out-of-distribution answers) drifted, or when any one column drifted strongly
(p < 0.001, or a distance five times the threshold): a new resolution moves only width and
height, a blurrier scanner only sharpness, and neither reaches a share of the columns.

Evidently's HTML report is one self-contained file: its JavaScript (React, Plotly) is inlined,
no script or stylesheet is fetched from a CDN. The only URL in it is Plotly's default
`topojsonURL` (cdn.plot.ly), used for geographic maps, which this report never draws.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from braintumor.htmlkit import FAIL_COLOUR, PASS_COLOUR, escape
from braintumor.monitoring.features import (
    CATEGORICAL_FEATURES,
    CONFIDENCE,
    FEATURE_COLUMNS,
    OUT_OF_DISTRIBUTION,
    split_constant_columns,
)

# Up to this many rows on the smaller side, numeric columns use the K-S test (see DriftPolicy).
SMALL_SAMPLE = 1000


class DriftInputError(ValueError):
    """Tables that cannot be compared: too few rows, or no feature in common."""


class DriftPolicy(BaseModel):
    """When drift is worth an alarm (validated once, at the edge: config, CLI, pipeline).

        Defaults: one feature column in three (`drift_share` 0.3). With ~15 columns tested at
        p < 0.05, five or more drifting by chance alone is rare, while a change of contrast or
        intensity moves most intensity and texture features together. A drifted confidence alone
        is enough: it is the model's own signal that inputs look unfamiliar; so is a drifted share
    of out-of-distribution answers (the guard's flag, `out_of_distribution`). And one column
        drifting strongly is enough (`strong_p_value`, `strong_distance_ratio`): by chance, the
        smallest of ~15 p-values falls below 0.001 in about 1.5% of checks. See
        benchmarks/results/drift.json for measured false-alarm and detection rates.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    drift_share: float = Field(0.3, gt=0, le=1)
    critical_columns: tuple[str, ...] = (CONFIDENCE, OUT_OF_DISTRIBUTION)
    # One column alone is drift when its test is this far past the threshold. None: off.
    strong_p_value: float | None = Field(0.001, gt=0, lt=1)
    strong_distance_ratio: float | None = Field(5.0, gt=1)
    # Fewer rows than this on either side: per-column tests are too weak to trust; refuse.
    min_rows: int = Field(20, ge=2)
    # Evidently's per-column test and threshold for every column; None: see `num_method`.
    method: str | None = None
    threshold: float | None = Field(None, gt=0)
    # The test for numeric columns when `method` is None. None: Kolmogorov-Smirnov up to
    # `SMALL_SAMPLE` rows (Evidently would pick chi-square for columns with <= 5 distinct
    # values, such as image sizes, which is unreliable with few rows per value), Evidently's
    # default (normed Wasserstein) above.
    num_method: str | None = None


@dataclass(frozen=True)
class ColumnDrift:
    """Evidently's verdict on one column. `kind` says how to read `score`: a p-value (drift
    when below the threshold) or a distance (drift when at or above it)."""

    column: str
    method: str
    threshold: float
    score: float
    drifted: bool
    kind: Literal["p_value", "distance"] = "p_value"


def score_kind(score: float, threshold: float, drifted: bool) -> Literal["p_value", "distance"]:
    """Whether a test's score is a p-value or a distance, read off its verdict: a p-value test
    drifts below its threshold, a distance at or above it. (Evidently names its methods
    freely, e.g. "K-S p_value" or just "ks", so the name is no guide.)"""
    if math.isnan(score):
        return "p_value"
    return "p_value" if (score < threshold) == drifted else "distance"


def strongly_drifted(column: ColumnDrift, policy: DriftPolicy) -> bool:
    """Whether `column` drifted far past its threshold (see `DriftPolicy`)."""
    if not column.drifted:
        return False
    if column.kind == "p_value":
        return policy.strong_p_value is not None and column.score < policy.strong_p_value
    ratio = policy.strong_distance_ratio
    return ratio is not None and column.score >= ratio * column.threshold


@dataclass
class DriftResult:
    """A drift report: the per-column verdicts, the decision, and Evidently's HTML and JSON."""

    drifted: bool
    share_drifted: float
    per_column: dict[str, ColumnDrift]
    html: str
    json: dict[str, Any]
    reasons: list[str] = field(default_factory=list)
    reference_rows: int = 0
    current_rows: int = 0
    constant_columns: list[str] = field(default_factory=list)
    policy: DriftPolicy = field(default_factory=DriftPolicy)

    @property
    def drifted_columns(self) -> list[str]:
        return [name for name, col in self.per_column.items() if col.drifted]

    @property
    def strongly_drifted_columns(self) -> list[str]:
        return [n for n, col in self.per_column.items() if strongly_drifted(col, self.policy)]

    def summary(self) -> dict[str, Any]:
        """Plain values for metadata, logs and job summaries (no HTML)."""
        return {
            "drifted": self.drifted,
            "share_drifted": round(self.share_drifted, 4),
            "drifted_columns": self.drifted_columns,
            "strongly_drifted_columns": self.strongly_drifted_columns,
            "columns_tested": len(self.per_column),
            "reasons": self.reasons,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "constant_columns": self.constant_columns,
            "policy": self.policy.model_dump(),
            "per_column": {name: asdict(col) for name, col in self.per_column.items()},
        }

    def save_html(self, path: str | Path) -> Path:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(self.html, encoding="utf-8")
        return target


def decide_drift(
    per_column: dict[str, ColumnDrift], policy: DriftPolicy
) -> tuple[bool, float, list[str]]:
    """(drifted, share of drifted columns, reasons) under `policy`; pure."""
    if not per_column:
        return False, 0.0, ["no column was tested"]
    drifted = [name for name, col in per_column.items() if col.drifted]
    share = len(drifted) / len(per_column)
    reasons = []
    if share >= policy.drift_share:
        reasons.append(
            f"{len(drifted)} of {len(per_column)} columns drifted ({share:.0%} >= "
            f"{policy.drift_share:.0%}): {', '.join(drifted)}"
        )
    for name in policy.critical_columns:
        column = per_column.get(name)
        if column is not None and column.drifted:
            reasons.append(
                f"critical column {name} drifted ({column.method} {column.score:.4g}, "
                f"threshold {column.threshold:.4g})"
            )
    for column in per_column.values():
        if column.column not in policy.critical_columns and strongly_drifted(column, policy):
            limit = (
                f"p < {policy.strong_p_value:g}"
                if column.kind == "p_value"
                else f">= {policy.strong_distance_ratio:g} x {column.threshold:.4g}"
            )
            reasons.append(
                f"{column.column} drifted strongly ({column.method} {column.score:.4g}, {limit})"
            )
    if reasons:
        return True, share, reasons
    detail = f": {', '.join(drifted)}" if drifted else ""
    return (
        False,
        share,
        [
            f"{len(drifted)} of {len(per_column)} columns drifted ({share:.0%} < "
            f"{policy.drift_share:.0%}), none strongly, no critical column{detail}"
        ],
    )


def drift_columns(reference: pd.DataFrame, current: pd.DataFrame) -> list[str]:
    """The known feature columns present in both tables, in `FEATURE_COLUMNS` order."""
    return [c for c in FEATURE_COLUMNS if c in reference.columns and c in current.columns]


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    policy: DriftPolicy | None = None,
    columns: Sequence[str] | None = None,
) -> DriftResult:
    """Compare `current` with `reference` column by column and decide under `policy`.

    Args:
        reference: the feature table of the data the model was trained on.
        current: the feature table of new images, or of the prediction log.
        policy: thresholds of the decision (default `DriftPolicy()`).
        columns: the columns to test; default: the known features both tables hold
            (`drift_columns`). Columns constant across both tables are left out.

    Raises:
        DriftInputError: fewer than `policy.min_rows` rows on a side, or no column to test.
    """
    policy = policy or DriftPolicy()
    for name, frame in (("reference", reference), ("current", current)):
        if len(frame) < policy.min_rows:
            raise DriftInputError(
                f"the {name} data has {len(frame)} rows; a drift test needs at least "
                f"{policy.min_rows} (add images or lower min_rows)"
            )
    wanted = list(columns) if columns is not None else drift_columns(reference, current)
    missing = [c for c in wanted if c not in reference.columns or c not in current.columns]
    if missing:
        raise DriftInputError(f"columns {missing} are not in both tables")
    tested, constant = split_constant_columns(reference, current, columns=wanted)
    if not tested:
        raise DriftInputError(
            f"no feature to compare: the tables share {wanted or 'no known feature column'}"
            + (f", all constant ({constant})" if constant else "")
        )
    snapshot = _run_evidently(reference, current, tested, policy)
    per_column = _per_column(snapshot, tested)
    drifted, share, reasons = decide_drift(per_column, policy)
    return DriftResult(
        drifted=drifted,
        share_drifted=share,
        per_column=per_column,
        html=with_verdict(snapshot.get_html_str(as_iframe=False), drifted, reasons),
        json=json.loads(snapshot.json()),
        reasons=reasons,
        reference_rows=len(reference),
        current_rows=len(current),
        constant_columns=constant,
        policy=policy,
    )


def with_verdict(html: str, drifted: bool, reasons: Sequence[str]) -> str:
    """Put the policy's verdict at the top of Evidently's page: Evidently's own headline
    ("Dataset Drift is NOT detected") applies the share rule only, not the strong-column or
    critical-column rules, and must not be the first thing a reader sees."""
    colour, verdict = (FAIL_COLOUR, "DRIFT DETECTED") if drifted else (PASS_COLOUR, "no drift")
    items = "".join(f"<li>{escape(reason)}</li>" for reason in reasons)
    banner = (
        f'<div id="braintumor-verdict" style="font-family:system-ui,sans-serif;margin:1rem '
        f'2%;padding:.8rem 1rem;border-left:6px solid {colour};background:#f7f7f7">'
        f'<b style="color:{colour}">Drift policy verdict: {verdict}</b>'
        f'<ul style="margin:.4rem 0 0">{items}</ul>'
        "<small>Evidently's per-column tests follow; its own headline applies the "
        "share-of-columns rule only.</small></div>"
    )
    head, body_tag, rest = html.partition("<body>")
    return head + body_tag + banner + rest if body_tag else banner + html


def _typed(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    typed = {}
    for name in columns:
        values = frame[name]
        if name in CATEGORICAL_FEATURES or not pd.api.types.is_numeric_dtype(values):
            typed[name] = values.astype(str)
        else:
            typed[name] = pd.to_numeric(values).astype("float64")
    return pd.DataFrame(typed).reset_index(drop=True)


def _run_evidently(
    reference: pd.DataFrame, current: pd.DataFrame, columns: list[str], policy: DriftPolicy
) -> Any:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    ref, cur = _typed(reference, columns), _typed(current, columns)
    num_method = policy.num_method
    if num_method is None and policy.method is None and min(len(ref), len(cur)) <= SMALL_SAMPLE:
        num_method = "ks"
    categorical = [c for c in columns if ref[c].dtype == object]
    definition = DataDefinition(
        numerical_columns=[c for c in columns if c not in categorical],
        categorical_columns=categorical,
    )
    report = Report(
        [
            DataDriftPreset(
                columns=columns,
                drift_share=policy.drift_share,
                method=policy.method,
                num_method=num_method,
                threshold=policy.threshold,
            )
        ],
        include_tests=True,
    )
    with warnings.catch_warnings():
        # Evidently's correlation widgets divide by zero spread on near-constant columns.
        warnings.simplefilter("ignore", RuntimeWarning)
        return report.run(
            current_data=Dataset.from_pandas(cur, data_definition=definition),
            reference_data=Dataset.from_pandas(ref, data_definition=definition),
        )


def _per_column(snapshot: Any, columns: list[str]) -> dict[str, ColumnDrift]:
    """Read each column's method, threshold, score and verdict from the snapshot."""
    scores: dict[str, tuple[str, float, float]] = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith(":ValueDrift"):
            value = metric["value"]
            score = float(value) if value is not None else math.nan
            scores[config["column"]] = (
                str(config["method"]),
                float(config["threshold"]),
                score,
            )
    verdicts: dict[str, bool] = {}
    for test in snapshot.tests_results:
        params = (test.metric_config.params if test.metric_config else {}) or {}
        if str(params.get("type", "")).endswith(":ValueDrift"):
            verdicts[params["column"]] = str(test.status.value) == "FAIL"
    missing = [c for c in columns if c not in scores or c not in verdicts]
    if missing:
        raise RuntimeError(f"Evidently returned no drift verdict for columns {missing}")
    per_column = {}
    for name in columns:
        method, threshold, score = scores[name]
        drifted = verdicts[name]
        kind = score_kind(score, threshold, drifted)
        per_column[name] = ColumnDrift(name, method, threshold, score, drifted, kind)
    return per_column
