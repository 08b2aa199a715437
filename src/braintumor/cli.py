"""The `braintumor` command: thin wrappers that parse options, call the library (or run a
pipeline) and print a short summary. Errors a user can fix become one red line and exit 2.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from braintumor.constants import DEFAULT_SOURCE_NAME, QUARANTINE_FILE

app = typer.Typer(
    help="braintumor: leakage-free brain-tumour MRI classification, from data to served model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(
    help="Get, check and derive the image data (DVC-tracked).", no_args_is_help=True
)
app.add_typer(data_app, name="data")

# soft_wrap: messages stay on one line (greppable, copyable) whatever the terminal width.
console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


# What the `cpu`/`gpu` extras install: missing, a command that trains says which extra.
TRAINING_MODULES = ("tensorflow",)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn the errors a user can act on into one readable line and exit code 2."""
    from braintumor.data.manifest import ManifestError
    from braintumor.data.sources import SourceError
    from braintumor.data.versioning import DataOutOfSyncError, DvcError
    from braintumor.imaging import ImageDecodeError

    try:
        yield
    except (
        SourceError,
        ManifestError,
        ImageDecodeError,
        DvcError,
        DataOutOfSyncError,
        FileNotFoundError,
        ValueError,
    ) as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top not in TRAINING_MODULES:
            raise
        console.print(
            f"[bold red]error:[/] {top} is not installed: training needs the `cpu` or `gpu` "
            "extra (pip install -e '.\\[cpu]', or make setup)"
        )
        raise typer.Exit(2) from None


def _progress_bar(description: str, transfer: bool = False) -> Progress:
    columns = [TextColumn(description), BarColumn()]
    columns += [DownloadColumn()] if transfer else [TextColumn("{task.completed}/{task.total}")]
    return Progress(*columns, TimeRemainingColumn(), console=console, transient=True)


def _progress_callback(bar: Progress, task: int) -> Callable[[int, int | None], None]:
    def update(done: int, total: int | None) -> None:
        bar.update(task, completed=done, total=total)

    return update


@data_app.command("ingest")
def data_ingest(
    source: Annotated[
        str | None,
        typer.Argument(
            help="A folder (Training|Testing/<class>/* or <class>/*), a .zip of either, or an "
            "http(s) URL of such a zip. Default: $BRAINTUMOR_DATA_SOURCE, else the public "
            "GitHub archive of the Kaggle dataset.",
            show_default=False,
        ),
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Where the canonical layout goes.")] = Path(
        "data/raw"
    ),
    sha256: Annotated[
        str | None, typer.Option(help="Expected sha256 of the zip (URL or file); mismatch = error.")
    ] = None,
    checksums: Annotated[
        str | None,
        typer.Option(
            help="A sha256sum-style list (or the known name 'sartaj-3ea9f4e') to verify every "
            "file against. Default: the known list when ingesting the default URL.",
        ),
    ] = None,
    allow_unverified: Annotated[
        bool, typer.Option(help="Keep the data even if files differ from --checksums.")
    ] = False,
    max_pixels: Annotated[
        int, typer.Option(help="Quarantine images with more pixels.")
    ] = 40_000_000,
    source_name: Annotated[
        str, typer.Option("--source", help="The name of this source in the manifest.")
    ] = DEFAULT_SOURCE_NAME,
) -> None:
    """Ingest a dataset into data/raw (replacing it) with a manifest; bad files go to
    data/quarantine. `data add` appends further sources."""
    from braintumor.data.ingest import ingest
    from braintumor.data.sources import DEFAULT_SOURCE

    source = source or os.environ.get("BRAINTUMOR_DATA_SOURCE") or DEFAULT_SOURCE
    if checksums is None and source == DEFAULT_SOURCE:
        checksums = "sartaj-3ea9f4e"
    console.print(f"ingesting [bold]{source}[/] -> {out_dir}")
    with _user_errors(), _progress_bar("download", transfer=True) as bar:
        download_task = bar.add_task("download", total=None, visible=False)
        files_task = bar.add_task("files", total=None, visible=False)

        def on_download(done: int, total: int | None) -> None:
            bar.update(download_task, completed=done, total=total, visible=True)

        def on_files(done: int, total: int) -> None:
            bar.update(download_task, visible=False)
            bar.update(files_task, completed=done, total=total, visible=True)

        result = ingest(
            source,
            out_dir=out_dir,
            expected_sha256=sha256,
            checksums=checksums,
            max_pixels=max_pixels,
            download_progress=on_download,
            progress=on_files,
            source_name=source_name,
        )
    out.print(_counts_table(result.counts(), f"Ingested into {out_dir} as {source_name}", "split"))
    _print_quarantine(result.quarantine, out_dir)
    if result.ignored:
        out.print(f"ignored {len(result.ignored)} system file(s) (e.g. {result.ignored[0]})")
    report = result.checksum_report
    if report is not None:
        if report.ok:
            out.print(
                f"[green]verified[/]: all {report.matched} files match the published checksums"
            )
        else:
            console.print(
                f"[bold red]checksum check failed[/]: {report.matched} match, "
                f"{len(report.mismatched)} differ, {len(report.missing)} missing, "
                f"{len(report.unexpected)} unexpected (e.g. "
                f"{(report.mismatched + report.missing + report.unexpected)[0]})"
            )
            if not allow_unverified:
                raise typer.Exit(3)


def _print_quarantine(quarantine, data_dir: Path) -> None:
    if len(quarantine):
        out.print(
            f"[yellow]quarantined {len(quarantine)} file(s)[/], listed in "
            f"{data_dir.parent / QUARANTINE_FILE}:"
        )
        for reason, count in quarantine["reason"].value_counts().items():
            out.print(f"  {reason}: {count}")
    else:
        out.print("quarantined 0 files")


def _counts_table(counts, title: str, first: str) -> Table:
    table = Table(title=title)
    table.add_column(first)
    for column in counts.columns:
        table.add_column(str(column), justify="right")
    for name, row in counts.iterrows():
        table.add_row(str(name), *(str(v) for v in row))
    return table


@data_app.command("add")
def data_add(
    source: Annotated[
        str,
        typer.Argument(
            help="A labelled batch: a folder (Training|Testing/<class>/* or <class>/*), a .zip "
            "of either, or an http(s) URL of such a zip.",
            show_default=False,
        ),
    ],
    name: Annotated[
        str,
        typer.Option("--source", help="The batch's name in the manifest, e.g. figshare-br35h."),
    ],
    data: Annotated[Path, typer.Option(help="The data folder to append to.")] = Path("data/raw"),
    sha256: Annotated[
        str | None, typer.Option(help="Expected sha256 of the zip (URL or file); mismatch = error.")
    ] = None,
    max_pixels: Annotated[
        int, typer.Option(help="Quarantine images with more pixels.")
    ] = 40_000_000,
    dvc: Annotated[
        bool, typer.Option(help="Record a new DVC version of the data folder (`dvc add`).")
    ] = True,
) -> None:
    """Append a labelled batch to data/raw as source NAME; adding it again changes nothing."""
    from braintumor.data.batches import add_batch, source_counts
    from braintumor.data.versioning import dvc_add

    console.print(f"adding [bold]{source}[/] as source [bold]{name}[/] -> {data}")
    with _user_errors():
        with _progress_bar("files") as bar:
            task = bar.add_task("files", total=None)
            result = add_batch(
                source,
                name,
                raw_dir=data,
                max_pixels=max_pixels,
                progress=_progress_callback(bar, task),
            )
        if result.changed:
            out.print(_counts_table(source_counts(result.added), f"Added to {data}", "source"))
            _print_quarantine(result.quarantined, data)
            if result.already_present:
                out.print(f"skipped {result.already_present} file(s) added before")
        else:
            out.print(
                f"nothing to add: all {result.already_present} file(s) of this batch are "
                f"already in {data} as source {name}"
            )
        out.print(f"{data} now holds {len(result.manifest)} images")
        if dvc:
            out.print(f"DVC: {dvc_add(data)} records this version")


@data_app.command("sources")
def data_sources(
    data: Annotated[Path, typer.Option(help="Ingested data folder (with manifest.csv).")] = Path(
        "data/raw"
    ),
) -> None:
    """List the sources of the data with their image counts per class."""
    from braintumor.data.batches import source_counts
    from braintumor.data.manifest import read_manifest

    with _user_errors():
        counts = source_counts(read_manifest(data))
    counts.loc["total"] = counts.sum()
    out.print(_counts_table(counts, f"Sources of {data}", "source"))


@data_app.command("clahe")
def data_clahe(
    raw_dir: Annotated[
        Path, typer.Option("--raw", help="Ingested data (with manifest.csv).")
    ] = Path("data/raw"),
    out_dir: Annotated[Path, typer.Option("--out", help="Where the CLAHE dataset goes.")] = Path(
        "data/clahe"
    ),
    params: Annotated[Path, typer.Option(help="params.yaml holding the `clahe` section.")] = Path(
        "params.yaml"
    ),
) -> None:
    """Derive the CLAHE dataset (the DVC `clahe` stage runs this)."""
    import time

    from braintumor.data.clahe_stage import derive_clahe
    from braintumor.params import clahe_params

    with _user_errors():
        settings = clahe_params(params)
        start = time.perf_counter()
        frame = derive_clahe(raw_dir, out_dir, settings.spec())
    seconds = time.perf_counter() - start
    out.print(
        f"wrote {len(frame)} CLAHE images to {out_dir} in {seconds:.1f} s "
        f"(clip {settings.clip_limit}, tiles {settings.tile_grid}, {settings.image_size}px)"
    )


PROTOCOL_HELP = "Override params.yaml: resplit (default), official or leave-source-out."
HOLDOUT_HELP = "With --protocol leave-source-out: the source to test on (braintumor data sources)."


@data_app.command("audit")
def data_audit(
    data: Annotated[Path, typer.Option(help="Ingested data folder (with manifest.csv).")] = Path(
        "data/raw"
    ),
    out_dir: Annotated[
        Path, typer.Option("--out", help="Where splits.csv, audit.json and report.html go.")
    ] = Path("data/audit"),
    params: Annotated[
        Path, typer.Option(help="params.yaml holding the `integrity` policy.")
    ] = Path("params.yaml"),
    protocol: Annotated[str | None, typer.Option(help=PROTOCOL_HELP)] = None,
    holdout: Annotated[str | None, typer.Option(help=HOLDOUT_HELP)] = None,
    html: Annotated[bool, typer.Option(help="Write the HTML report too.")] = True,
) -> None:
    """Find duplicates, label conflicts, leakage and shortcuts; write the leakage-free split."""
    from braintumor.data.manifest import read_manifest
    from braintumor.integrity.audit import run_audit
    from braintumor.integrity.policy import IntegrityPolicy, with_protocol
    from braintumor.params import load_params

    with _user_errors():
        integrity = with_protocol(load_params(params).get("integrity"), protocol, holdout)
        policy = IntegrityPolicy.from_dict(integrity)
        manifest = read_manifest(data)
        with console.status("auditing") as status:
            result = run_audit(
                data,
                manifest,
                policy,
                out_dir,
                html=html,
                progress=lambda message: status.update(message),
            )
    figures = result.figures
    clusters, leakage = figures["clusters"], figures["leakage"]
    table = Table(title=f"Data audit of {data} ({len(manifest)} images)")
    table.add_column("finding")
    table.add_column("value", justify="right")
    table.add_row("duplicate clusters", str(clusters["clusters"]))
    table.add_row(
        "redundant images (copies beyond one per cluster)", str(clusters["redundant_images"])
    )
    table.add_row(
        "label-conflict clusters (quarantined)", str(figures["label_conflicts"]["clusters"])
    )
    if leakage["testing_images"]:
        table.add_row(
            "Testing images with a Training twin",
            f"{leakage['testing_with_training_twin']}/{leakage['testing_images']} "
            f"({leakage['share_of_testing']:.0%})",
        )
    sources = figures["sources"]
    for name in sources["sources"] if len(sources["sources"]) > 1 else ():
        total = sum(sources["images_by_source_class"][name].values())
        table.add_row(
            f"source {name}: images with a copy in another source",
            f"{total - sources['unique_images'][name]}/{total}",
        )
    if len(sources["sources"]) > 1:
        table.add_row("label conflicts across sources", str(sources["label_conflicts"]["clusters"]))
    out.print(table)
    out.print(f"shortcut check: {figures['shortcut']['summary']}")
    if "appearance_shortcut" in figures:
        out.print(f"appearance check: {figures['appearance_shortcut']['summary']}")
    out.print(f"splits ({policy.protocol}): {result.splits_csv}")
    out.print(f"figures: {result.audit_json}")
    if result.report_html:
        out.print(f"report: {result.report_html}")


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
    with _user_errors():
        from pipelines.launch import RunConfigError, SubmissionError, launch_training

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
    from pipelines.launch import RunConfigError, SubmissionError
    from pipelines.tuning import launch_tuning

    with _user_errors():
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
    from pipelines.crossval import launch_crossval
    from pipelines.launch import RunConfigError, SubmissionError

    with _user_errors():
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
        float, typer.Option(help="Alarm when at least this share of the columns drifted.")
    ] = 0.3,
    critical: Annotated[
        list[str] | None,
        typer.Option(
            help="A column whose drift alone raises the alarm (repeatable; default confidence;"
            " give an empty string for none).",
            show_default=False,
        ),
    ] = None,
    min_rows: Annotated[int, typer.Option(help="Refuse smaller data sets on either side.")] = 20,
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

    with _user_errors():
        policy = DriftPolicy(
            drift_share=drift_share,
            critical_columns=(
                tuple(c for c in critical if c) if critical is not None else ("confidence",)
            ),
            min_rows=min_rows,
        )
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
    from pipelines.operations import promote_to_production

    with _user_errors():
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
    from pipelines.operations import rollback_production

    with _user_errors():
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
    from pipelines.operations import package_version

    with _user_errors():
        model_version, (model_tag, bento_tag) = package_version(
            version, stage, build, as_stage=as_stage
        )
    out.print(f"version {model_version.number} -> BentoML model {model_tag}")
    if bento_tag:
        out.print(f"Bento {bento_tag}: serve it with `bentoml serve {bento_tag}`")


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover
    app()
