"""The whole `braintumor` command (the console script): the library's app
(`braintumor.cli`: data ...) and the commands that run a ZenML pipeline or use the model
registry (train, tune, cv, monitor, promote, rollback, package), added to it here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from braintumor.cli import HOLDOUT_HELP, PROTOCOL_HELP, app, console, out, user_errors


def _print_leaderboard(rows: list[dict], winner: str | None) -> None:
    table = Table(title="Leaderboard (validation)")
    for column in ("backbone", "weighted F1", "95% CI", "min recall", "params", "train s"):
        table.add_column(column, justify="left" if column == "backbone" else "right")
    for row in rows:
        low, high = row["val_weighted_f1_ci"]
        name = f"[bold]{row['backbone']}[/]" if row["backbone"] == winner else row["backbone"]
        table.add_row(
            name,
            f"{row['val_weighted_f1']:.4f}",
            f"[{low:.3f}, {high:.3f}]",
            f"{row['val_min_recall']:.3f}",
            f"{row['params']:,}" if row.get("params") else "",
            f"{row['train_seconds']:.0f}" if row.get("train_seconds") is not None else "",
        )
    out.print(table)


@app.command()
def train(
    config: Annotated[
        Path, typer.Option(help="A run config (configs/smoke|cpu|full.yaml).")
    ] = Path("configs/cpu.yaml"),
    data: Annotated[Path, typer.Option(help="Ingested data folder (with manifest.csv).")] = Path(
        "data/raw"
    ),
    params: Annotated[Path, typer.Option(help="params.yaml (CLAHE, integrity policy).")] = Path(
        "params.yaml"
    ),
    protocol: Annotated[str | None, typer.Option(help=PROTOCOL_HELP)] = None,
    holdout: Annotated[str | None, typer.Option(help=HOLDOUT_HELP)] = None,
    variant: Annotated[
        str | None, typer.Option(help="Override the preprocessing of every backbone: raw or clahe.")
    ] = None,
    cache: Annotated[
        bool, typer.Option(help="Reuse cached steps when their inputs are unchanged.")
    ] = True,
    report_dir: Annotated[
        Path, typer.Option(help="Where the run's HTML report is written.")
    ] = Path("reports"),
) -> None:
    """Run the training pipeline: audit, split, train each backbone, gate, promote, package."""
    with user_errors():
        from braintumor_zenml.launch import RunConfigError, SubmissionError, launch_training

        try:
            outcome = launch_training(
                config,
                data,
                params,
                protocol=protocol,
                holdout=holdout,
                variant=variant,
                enable_cache=cache,
                report_dir=report_dir,
            )
        except (RunConfigError, SubmissionError) as exc:
            raise ValueError(str(exc)) from None
    _print_leaderboard(outcome.leaderboard, outcome.winner)
    metrics = outcome.test_metrics
    if metrics:
        low, high = metrics["weighted_f1_ci"]
        out.print(
            f"winner [bold]{outcome.winner}[/] on the test split ({metrics['protocol']} protocol, "
            f"{metrics['n']} images): weighted F1 {metrics['weighted_f1']:.4f} "
            f"[{low:.4f}, {high:.4f}]"
        )
    decision = outcome.decision
    colour = "green" if decision.get("passed") else "red"
    out.print(f"model version {outcome.model_version}: [{colour}]{decision.get('summary', '')}[/]")
    if outcome.same_model_as is not None:
        out.print(
            f"version {outcome.model_version} holds the same model as version "
            f"{outcome.same_model_as} (nothing changed since): no stage set"
        )
    if outcome.packaged.get("packaged"):
        out.print(
            f"packaged: {outcome.packaged['model_tag']} -> Bento {outcome.packaged['bento_tag']}"
        )
    if outcome.report_path:
        out.print(f"report: {outcome.report_path}")
    if decision and not decision.get("passed"):
        raise typer.Exit(outcome.exit_code_on_reject)


@app.command()
def tune(
    config: Annotated[
        Path, typer.Option(help="A run config with a `tuning:` block (the search space).")
    ] = Path("configs/cpu.yaml"),
    trials: Annotated[int, typer.Option(help="Trials to run now (added to the study's).")] = 20,
    data: Annotated[Path, typer.Option(help="Ingested data folder (with manifest.csv).")] = Path(
        "data/raw"
    ),
    params: Annotated[Path, typer.Option(help="params.yaml (CLAHE, integrity policy).")] = Path(
        "params.yaml"
    ),
    protocol: Annotated[
        str | None, typer.Option(help="Override params.yaml: resplit (default) or official.")
    ] = None,
    study: Annotated[
        str | None,
        typer.Option(help="Study name (default: tuning.study_name, else the config's name)."),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(help="Optuna storage URL (default: optuna.db next to the ZenML store)."),
    ] = None,
    out_path: Annotated[
        Path | None,
        typer.Option("--out", help="The best trial's run config (configs/tuned/<study>.yaml)."),
    ] = None,
) -> None:
    """Tune a run config with Optuna on the validation split (never the test split); the
    same study name and storage continue a study. Writes the best trial as a run config."""
    from braintumor_zenml.launch import RunConfigError, SubmissionError
    from pipelines.tuning import launch_tuning

    with user_errors():
        try:
            outcome = launch_tuning(
                config, trials, data, params, protocol, storage, study, out_path
            )
        except (RunConfigError, SubmissionError) as exc:
            raise ValueError(str(exc)) from None
    summary = outcome.study
    if not summary:
        console.print(f"[bold red]error:[/] run {outcome.run_name} ended {outcome.status}")
        raise typer.Exit(1)
    best = summary["best"]
    table = Table(title=f"Study {summary['study_name']} ({summary['storage']})")
    for column in ("trial", "state", "val weighted F1", "epochs", "seconds"):
        table.add_column(column, justify="left" if column == "state" else "right")
    for trial in summary["trials"]:
        table.add_row(
            f"[bold]{trial['number']}[/]"
            if trial["number"] == best["number"]
            else str(trial["number"]),
            trial["state"],
            "" if trial["value"] is None else f"{trial['value']:.4f}",
            str(trial["epochs"]),
            "" if trial["seconds"] is None else f"{trial['seconds']:.0f}",
        )
    out.print(table)
    out.print(
        f"{summary['new_trials']} new trial(s); best: trial {best['number']}, validation "
        f"weighted F1 {best['value']:.4f} with {best['values']}"
    )
    out.print(f"best run config: {outcome.best_config} (braintumor train --config ...)")


@app.command()
def cv(
    config: Annotated[
        Path, typer.Option(help="A run config (configs/smoke|cpu|full.yaml).")
    ] = Path("configs/cpu.yaml"),
    folds: Annotated[int, typer.Option(help="Folds per scheme (at least 2).")] = 5,
    backbone: Annotated[
        str | None, typer.Option(help="The backbone to cross-validate (default: the first).")
    ] = None,
    data: Annotated[Path, typer.Option(help="Ingested data folder (with manifest.csv).")] = Path(
        "data/raw"
    ),
    params: Annotated[Path, typer.Option(help="params.yaml (CLAHE, integrity policy).")] = Path(
        "params.yaml"
    ),
    report_dir: Annotated[
        Path, typer.Option(help="Where the run's HTML report is written.")
    ] = Path("reports"),
) -> None:
    """Cross-validate a recipe: k folds grouped by duplicate cluster, and the same k-fold
    ungrouped over every copy (as the research did), to show what the leakage adds."""
    from braintumor_zenml.launch import RunConfigError, SubmissionError
    from pipelines.crossval import launch_crossval

    with user_errors():
        try:
            outcome = launch_crossval(config, folds, data, params, backbone, report_dir)
        except (RunConfigError, SubmissionError) as exc:
            raise ValueError(str(exc)) from None
    summary = outcome.summary
    if not summary:
        console.print(f"[bold red]error:[/] run {outcome.run_name} ended {outcome.status}")
        raise typer.Exit(1)
    grouped, ungrouped = summary["schemes"]["grouped"], summary["schemes"]["ungrouped"]
    table = Table(title=f"{summary['backbone']}: {summary['folds']}-fold cross-validation")
    for column in ("metric", "grouped (mean ± sd)", "ungrouped (mean ± sd)", "gap"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    rows = [("weighted F1", grouped["weighted_f1"], ungrouped["weighted_f1"])]
    rows.append(("macro F1", grouped["macro_f1"], ungrouped["macro_f1"]))
    rows += [
        (f"recall {c}", grouped["recall"][c], ungrouped["recall"][c]) for c in grouped["recall"]
    ]
    for label, g, u in rows:
        table.add_row(
            label,
            f"{g['mean']:.4f} ± {g['std']:.4f}",
            f"{u['mean']:.4f} ± {u['std']:.4f}",
            f"{u['mean'] - g['mean']:+.4f}",
        )
    out.print(table)
    out.print(
        f"grouped: {grouped['test_images']} kept images; ungrouped: "
        f"{ungrouped['test_images']} images including redundant copies"
    )
    if outcome.report_path:
        out.print(f"report: {outcome.report_path}")


# --- braintumor monitor (drift) -----------------------------------------------------------
# Exit codes: 0 no drift (or drift without --fail-on-drift), 1 drift with --fail-on-drift,
# 2 a problem the user can fix (missing folder, too few images, bad log, no reference).


@app.command("monitor")
def monitor_command(
    current: Annotated[
        str,
        typer.Option(
            help="New data: a folder of images, a prediction log (*.jsonl or a folder of them) "
            "or a feature table (.csv/.parquet).",
        ),
    ],
    reference: Annotated[
        str | None,
        typer.Option(
            help="What the model was trained on: a folder of images (e.g. data/raw/training), "
            "a log or a feature table. Optional with --pipeline: the production model's own.",
        ),
    ] = None,
    out_html: Annotated[
        Path, typer.Option("--out", help="Where Evidently's HTML report goes (one file).")
    ] = Path("reports/drift.html"),
    fail_on_drift: Annotated[
        bool, typer.Option(help="Exit with code 1 when drift is detected.")
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(help="Only log lines at or after this ISO time (e.g. 2026-11-20T00:00Z)."),
    ] = None,
    drift_share: Annotated[
        float | None,
        typer.Option(
            help="Alarm when at least this share of the columns drifted (default: the drift"
            " policy's, 0.3).",
            show_default=False,
        ),
    ] = None,
    critical: Annotated[
        list[str] | None,
        typer.Option(
            help="A column whose drift alone raises the alarm (repeatable; default: the drift"
            " policy's, confidence and out_of_distribution; give an empty string for none).",
            show_default=False,
        ),
    ] = None,
    min_rows: Annotated[
        int | None,
        typer.Option(
            help="Refuse smaller data sets on either side (default: the drift policy's, 20).",
            show_default=False,
        ),
    ] = None,
    summary_md: Annotated[
        Path | None,
        typer.Option(
            "--summary", help="Append a Markdown summary here (e.g. $GITHUB_STEP_SUMMARY)."
        ),
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the drift summary as JSON here.")
    ] = None,
    pipeline: Annotated[
        bool,
        typer.Option(
            help="Run the ZenML monitoring pipeline (records the verdict on the production "
            "model version) instead of checking in-process.",
        ),
    ] = False,
    model_name: Annotated[
        str | None, typer.Option(help="Model in ZenML's Model Control Plane (--pipeline).")
    ] = None,
) -> None:
    """Check new images or logged predictions for drift against the training data."""
    import json
    from datetime import datetime

    from braintumor.constants import MODEL_NAME
    from braintumor.monitoring.drift import DriftPolicy
    from braintumor.monitoring.monitor import monitor, outcome_markdown, summary_markdown

    with user_errors():
        # Only what the user gave: every default is DriftPolicy's own.
        given = {
            "drift_share": drift_share,
            "critical_columns": tuple(c for c in critical if c) if critical is not None else None,
            "min_rows": min_rows,
        }
        policy = DriftPolicy(**{k: v for k, v in given.items() if v is not None})
        start = datetime.fromisoformat(since) if since else None
        if start is not None and start.tzinfo is None:
            raise ValueError(f"--since needs a time zone (e.g. {since}Z or {since}+00:00)")
        if pipeline:
            from pipelines.monitoring import run_monitoring

            run = run_monitoring(
                current=current,
                reference=reference,
                model_name=model_name or MODEL_NAME,
                policy=policy.model_dump(),
                since=start.isoformat() if start else None,
            )
            summary, html = run.summary, run.html
            out_html.parent.mkdir(parents=True, exist_ok=True)
            out_html.write_text(html, encoding="utf-8")
            markdown = summary_markdown(
                summary,
                reference=reference or f"production {model_name or MODEL_NAME}",
                current=current,
                report=out_html,
            )
            console.print(f"ZenML run [bold]{run.run_name}[/]")
        else:
            if reference is None:
                raise ValueError("--reference is required (or use --pipeline)")
            outcome = monitor(reference, current, policy=policy, out_html=out_html, since=start)
            summary, markdown = outcome.result.summary(), outcome_markdown(outcome)
    _print_drift(summary)
    out.print(f"report: {out_html}")
    if summary_md is not None:
        with summary_md.open("a", encoding="utf-8") as handle:
            handle.write(markdown)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if summary["drifted"] and fail_on_drift:
        raise typer.Exit(1)


def _print_drift(summary: dict) -> None:
    table = Table(title="Drift per column")
    for name in ("column", "method", "score", "threshold", "drifted"):
        table.add_column(name, justify="left" if name in ("column", "method") else "right")
    for column in summary["per_column"].values():
        table.add_row(
            column["column"],
            column["method"],
            f"{column['score']:.4g}",
            f"{column['threshold']:.4g}",
            "[bold red]yes[/]" if column["drifted"] else "no",
        )
    out.print(table)
    verdict = "[bold red]DRIFT DETECTED[/]" if summary["drifted"] else "[green]no drift[/]"
    out.print(f"{verdict}: " + "; ".join(summary["reasons"]))


@app.command()
def promote(
    version: Annotated[int, typer.Option(help="The model version to move to production.")],
    params: Annotated[
        Path, typer.Option(help="params.yaml holding the promotion policy (`gate:`).")
    ] = Path("params.yaml"),
    dry_run: Annotated[bool, typer.Option(help="Only re-check the gate; move nothing.")] = False,
) -> None:
    """Move a version to production, re-checking its gate first.

    The gate is the repository's policy (params.yaml `gate:`), whatever policy the version's
    run used; today's production model is re-scored on the version's own test images. Exit
    code 1 when the gate refuses (production is then unchanged)."""
    from braintumor_zenml.operations import promote_to_production

    with user_errors():
        decision, model_version = promote_to_production(version, params, dry_run=dry_run)
    colour = "green" if decision.passed else "red"
    out.print(f"version {model_version.number}: [{colour}]{decision.summary()}[/]")
    if decision.passed and dry_run:
        out.print("dry run: production is unchanged")
    if not decision.passed:
        raise typer.Exit(1)


@app.command()
def rollback(
    reason: Annotated[
        str | None,
        typer.Option(help="Why production goes back (recorded on both versions). Required."),
    ] = None,
    to: Annotated[
        int | None,
        typer.Option(help="The version to go back to (default: the previous production one)."),
    ] = None,
    build: Annotated[bool, typer.Option(help="Also build the Bento (bentofile.yaml).")] = True,
) -> None:
    """Put the previous production version (or --to N) back in production, and package it.

    Packaging comes first: if it fails, production is unchanged. The rollback (from, to,
    reason, who, when) is recorded in both versions' metadata."""
    from braintumor_zenml.operations import rollback_production

    with user_errors():
        if reason is None:
            raise ValueError("--reason is required: say why production goes back")
        done = rollback_production(reason, to=to, build=build)
    out.print(
        f"production: version {done.to_version} (was {done.from_version}); "
        f"reason recorded: {done.reason}"
    )
    out.print(f"version {done.to_version} -> BentoML model {done.model_tag}")
    if done.bento_tag:
        out.print(f"Bento {done.bento_tag}: serve it with `bentoml serve {done.bento_tag}`")


@app.command()
def package(
    version: Annotated[int | None, typer.Option(help="Package this model version.")] = None,
    stage: Annotated[
        str | None, typer.Option(help="Or package the version in this stage (e.g. production).")
    ] = None,
    build: Annotated[bool, typer.Option(help="Also build the Bento (bentofile.yaml).")] = True,
    as_stage: Annotated[
        str | None,
        typer.Option(
            help="The stage the model card states (default: the version's own); the promotion "
            "workflow packages a version as production before moving it there.",
        ),
    ] = None,
) -> None:
    """Package a model version for serving (BentoML model store and Bento).

    An ONNX copy is shipped when it answers like the Keras model."""
    from braintumor_zenml.operations import package_version

    with user_errors():
        model_version, (model_tag, bento_tag) = package_version(
            version, stage, build, as_stage=as_stage
        )
    out.print(f"version {model_version.number} -> BentoML model {model_tag}")
    if bento_tag:
        out.print(f"Bento {bento_tag}: serve it with `bentoml serve {bento_tag}`")


if __name__ == "__main__":  # pragma: no cover
    app()
