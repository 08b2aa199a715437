"""One drift check from paths: what `braintumor monitor` and the monitoring pipeline run.

A source is a folder of images (any layout, searched recursively; files that cannot be decoded
are skipped and listed), a prediction log (a `.jsonl` file or a folder of them), or a saved
feature table (`.csv` or `.parquet`, e.g. the training pipeline's `reference_features`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from braintumor.monitoring.drift import DriftPolicy, DriftResult, drift_report
from braintumor.monitoring.features import SkippedImage, feature_table, list_images
from braintumor.monitoring.prediction_log import LOG_SUFFIX, read_prediction_log

SourceKind = Literal["images", "log", "table"]
TABLE_SUFFIXES = (".csv", ".parquet")


@dataclass
class FeatureSource:
    """A feature table and where it came from."""

    path: Path
    kind: SourceKind
    frame: pd.DataFrame
    skipped: list[SkippedImage] = field(default_factory=list)
    skipped_lines: int = 0

    def describe(self) -> str:
        what = {"images": "images", "log": "logged predictions", "table": "rows"}[self.kind]
        text = f"{len(self.frame)} {what} from {self.path}"
        if self.skipped:
            text += f" ({len(self.skipped)} unreadable file(s) skipped)"
        if self.skipped_lines:
            text += f" ({self.skipped_lines} malformed log line(s) skipped)"
        return text


@dataclass
class MonitorOutcome:
    result: DriftResult
    reference: FeatureSource
    current: FeatureSource
    html_path: Path | None = None


def source_kind(path: str | Path) -> SourceKind:
    """What `path` holds: a log (`.jsonl`, or a folder of them), a table, or images."""
    source = Path(path)
    if source.is_file():
        if source.suffix == LOG_SUFFIX:
            return "log"
        if source.suffix in TABLE_SUFFIXES:
            return "table"
        raise ValueError(
            f"{source}: expected a folder of images, a prediction log (*{LOG_SUFFIX}) or a "
            f"feature table ({', '.join(TABLE_SUFFIXES)})"
        )
    if source.is_dir():
        return "log" if any(source.glob(f"*{LOG_SUFFIX}")) else "images"
    raise FileNotFoundError(f"{source} does not exist")


def load_features(
    path: str | Path,
    *,
    since: datetime | None = None,
    skip_malformed: bool = True,
    workers: int | None = None,
) -> FeatureSource:
    """The feature table of a source (see the module doc). `since` filters prediction logs."""
    source = Path(path)
    kind = source_kind(source)
    if kind == "log":
        frame = read_prediction_log(source, since=since, skip_malformed=skip_malformed)
        return FeatureSource(source, kind, frame, skipped_lines=frame.attrs["skipped_lines"])
    if kind == "table":
        reader = pd.read_parquet if source.suffix == ".parquet" else pd.read_csv
        return FeatureSource(source, kind, reader(source))
    images = list_images(source)
    if not images:
        raise FileNotFoundError(f"no image files under {source}")
    skipped: list[SkippedImage] = []
    frame = feature_table(images, skipped=skipped, workers=workers)
    return FeatureSource(source, kind, frame, skipped=skipped)


def monitor(
    reference: str | Path | FeatureSource,
    current: str | Path | FeatureSource,
    *,
    policy: DriftPolicy | None = None,
    out_html: str | Path | None = None,
    since: datetime | None = None,
) -> MonitorOutcome:
    """Load both sources, compare them, and save Evidently's HTML report to `out_html`."""
    ref = reference if isinstance(reference, FeatureSource) else load_features(reference)
    cur = current if isinstance(current, FeatureSource) else load_features(current, since=since)
    result = drift_report(ref.frame, cur.frame, policy=policy)
    html_path = result.save_html(out_html) if out_html is not None else None
    return MonitorOutcome(result, ref, cur, html_path)


def summary_markdown(
    summary: dict[str, Any],
    *,
    reference: str = "",
    current: str = "",
    report: str | Path | None = None,
    skipped: Sequence[SkippedImage] = (),
) -> str:
    """A short Markdown summary of `DriftResult.summary()` (CI job summary, issue body)."""
    policy = summary["policy"]
    verdict = "**DRIFT DETECTED**" if summary["drifted"] else "no drift"
    critical = ", ".join(policy["critical_columns"]) or "no critical column"
    lines = [f"## Drift check: {verdict}", ""]
    lines += [f"- reference: {reference}"] if reference else []
    lines += [f"- current: {current}"] if current else []
    lines += [
        f"- drifted columns: {len(summary['drifted_columns'])} of {summary['columns_tested']} "
        f"({summary['share_drifted']:.0%}; alarm at {policy['drift_share']:.0%}, on any "
        f"strongly drifted column, or on any of {critical})",
        *(f"- {reason}" for reason in summary["reasons"]),
    ]
    if report is not None:
        lines.append(f"- report: `{report}`")
    lines += ["", "| column | method | score | threshold | drifted |", "|---|---|---|---|---|"]
    for column in summary["per_column"].values():
        mark = "yes" if column["drifted"] else ""
        lines.append(
            f"| {column['column']} | {column['method']} | {column['score']:.4g} | "
            f"{column['threshold']:.4g} | {mark} |"
        )
    if skipped:
        lines += ["", "Unreadable current files:"]
        lines += [f"- `{s.image}`: {s.reason} ({s.detail})" for s in skipped[:20]]
    return "\n".join(lines) + "\n"


def outcome_markdown(outcome: MonitorOutcome) -> str:
    """`summary_markdown` of a `monitor` outcome, with where the data came from."""
    return summary_markdown(
        outcome.result.summary(),
        reference=outcome.reference.describe(),
        current=outcome.current.describe(),
        report=outcome.html_path,
        skipped=outcome.current.skipped,
    )
