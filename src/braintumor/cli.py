"""The library's part of the `braintumor` command (`data ...`): thin wrappers that parse
options, call the library and print a short summary. Errors a user can fix become one red
line and exit 2 (`user_errors`).

The commands that run a ZenML pipeline or use the model registry are added to this `app` by
`braintumor_zenml.cli`, whose app is the console script.
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
def user_errors() -> Iterator[None]:
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
    with user_errors(), _progress_bar("download", transfer=True) as bar:
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
    with user_errors():
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

    with user_errors():
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

    with user_errors():
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

    with user_errors():
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


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover
    app()
