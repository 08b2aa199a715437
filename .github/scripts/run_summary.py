"""Markdown summary of the latest training run in the active ZenML store: the gate decision,
the winner's test scores and the leaderboard, for `$GITHUB_STEP_SUMMARY`.

    python .github/scripts/run_summary.py >> "$GITHUB_STEP_SUMMARY"

Reads the run's own artifacts (`promotion_decision`, `test_metrics`, `leaderboard`, `winner`,
`manifest`: the images per source the run trained on),
so it works the same with a local store and with a ZenML server. Exit code 1 when there is no
run to summarise.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

DEFAULT_PIPELINE = "training_pipeline"


def _output(run: Any, step: str, name: str) -> Any:
    steps = run.steps
    if step not in steps or name not in steps[step].outputs:
        return None
    return steps[step].outputs[name][0].load()


def _num(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def run_markdown(run: Any) -> str:
    decision = _output(run, "gate", "promotion_decision") or {}
    metrics = _output(run, "evaluate_winner", "test_metrics") or {}
    leaderboard = _output(run, "select_best", "leaderboard") or []
    winner = _output(run, "select_best", "winner")
    version = run.model_version.number if run.model_version else None
    status = str(getattr(run.status, "value", run.status))
    lines = [f"## Training run `{run.name}` ({status})", ""]
    if not decision:
        lines.append("No gate decision was recorded (the run stopped before the gate).")
    else:
        verdict = (
            f"PROMOTED to **{decision.get('target_stage')}**"
            if decision.get("passed")
            else "**REJECTED**: production is unchanged"
        )
        lines.append(f"Gate decision for model version {version}: {verdict}")
        policy = (decision.get("policy") or {}).get("name")
        if policy:
            lines.append(f"under the policy `{policy}`")
        lines.append("")
        for check in decision.get("checks", []):
            mark = "✅" if check.get("passed") else "❌"
            if check.get("ran") is False:
                mark += " ⚠️ not run:"
            lines.append(f"- {mark} {check.get('detail', check.get('name', ''))}")
    if metrics:
        low, high = metrics.get("weighted_f1_ci", (float("nan"), float("nan")))
        lines += [
            "",
            f"Winner **{winner}** on the test split ({metrics.get('protocol', '?')} protocol, "
            f"{metrics.get('n', '?')} images): weighted F1 {_num(metrics.get('weighted_f1'))} "
            f"[{low:.4f}, {high:.4f}]",
        ]
    manifest = _output(run, "load_data", "manifest")
    if manifest is not None and "source" in manifest.columns:
        counts = manifest["source"].value_counts()
        seen = ", ".join(f"{name} {count}" for name, count in counts.items())
        lines += ["", f"Data: {len(manifest)} images by source: {seen}"]
    if leaderboard:
        lines += ["", "| backbone | val weighted F1 | min class recall |", "|---|---|---|"]
        for row in leaderboard:
            lines.append(
                f"| {row.get('backbone')} | {_num(row.get('val_weighted_f1'))} | "
                f"{_num(row.get('val_min_recall'))} |"
            )
    return "\n".join(lines) + "\n"


def latest_run(pipeline_name: str) -> Any | None:
    from zenml.client import Client

    runs = Client().list_pipeline_runs(
        pipeline_name=pipeline_name, sort_by="desc:created", size=1, hydrate=True
    )
    return runs.items[0] if runs.items else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", default=DEFAULT_PIPELINE)
    args = parser.parse_args(argv)
    run = latest_run(args.pipeline)
    if run is None:
        print(f"No run of {args.pipeline} in this ZenML store.")
        return 1
    print(run_markdown(run), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
