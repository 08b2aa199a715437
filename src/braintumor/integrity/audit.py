"""The data audit: duplicates, label conflicts, leakage, metadata shortcuts, and the splits.

`run_audit(data_root, manifest, policy, out_dir)` writes into `out_dir`:
- `splits.csv`: the leakage-free splits of `policy.protocol` (see `integrity.splits`);
- `audit.json`: every figure, for machines;
- `report.html`: the same figures with example pairs, one self-contained file.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from braintumor.constants import PROTOCOL_OFFICIAL, PROTOCOL_RESPLIT, SPLITS_FILE
from braintumor.integrity.dedup import Duplicates, find_duplicates
from braintumor.integrity.figures import audit_figures
from braintumor.integrity.policy import IntegrityPolicy
from braintumor.integrity.verify import load_gray, verification_image

AUDIT_JSON = "audit.json"
REPORT_HTML = "report.html"


@dataclass
class AuditResult:
    """Figures and files of one audit."""

    figures: dict[str, Any]
    splits: pd.DataFrame
    duplicates: Duplicates
    splits_csv: Path
    audit_json: Path
    report_html: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)


def run_audit(
    data_root: Path,
    manifest: pd.DataFrame,
    policy: IntegrityPolicy | None = None,
    out_dir: Path = Path("data/audit"),
    loader: Callable[[Path], np.ndarray] = load_gray,
    html: bool = True,
    progress: Callable[[str], None] | None = None,
    images: Mapping[str, np.ndarray] | None = None,
) -> AuditResult:
    """Audit the images of `manifest` (paths relative to `data_root`) and write the results.

    Both protocols' splits are computed (the figures compare them); `splits.csv` holds the
    one `policy.protocol` names. `images` may hold verification images made earlier, by path.
    """
    from braintumor.integrity.splits import make_splits

    policy = policy or IntegrityPolicy()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = manifest.sort_values("path").reset_index(drop=True)
    say = progress or (lambda message: None)
    timings: dict[str, float] = {}

    started = time.perf_counter()
    say(f"searching near duplicates among {len(manifest)} images")
    duplicates = find_duplicates(
        data_root,
        manifest,
        policy,
        loader=loader,
        progress=lambda done, total: say(f"verified {done}/{total} candidate pairs"),
        images=images,
    )
    timings["duplicates_s"] = round(time.perf_counter() - started, 2)

    started = time.perf_counter()
    by_protocol = {}
    for protocol in (PROTOCOL_RESPLIT, PROTOCOL_OFFICIAL):
        if protocol == PROTOCOL_OFFICIAL and not (manifest["split"] == "testing").any():
            continue
        variant = policy.model_copy(update={"protocol": protocol})
        by_protocol[protocol] = make_splits(manifest, duplicates.cluster_ids, variant)
    splits = (
        by_protocol[policy.protocol]
        if policy.protocol in by_protocol
        else make_splits(manifest, duplicates.cluster_ids, policy)
    )
    timings["splits_s"] = round(time.perf_counter() - started, 2)

    started = time.perf_counter()
    figures = audit_figures(manifest, duplicates, by_protocol, policy)
    timings["figures_s"] = round(time.perf_counter() - started, 2)
    figures["timings"] = timings

    splits_csv = out_dir / SPLITS_FILE
    splits.to_csv(splits_csv, index=False, lineterminator="\n")
    audit_json = out_dir / AUDIT_JSON
    audit_json.write_text(json.dumps(figures, indent=2, sort_keys=False) + "\n")
    result = AuditResult(figures, splits, duplicates, splits_csv, audit_json, timings=timings)
    if html:
        from braintumor.integrity.report import write_report

        started = time.perf_counter()
        result.report_html = write_report(
            out_dir / REPORT_HTML, data_root, manifest, duplicates, figures, loader=loader
        )
        timings["report_s"] = round(time.perf_counter() - started, 2)
        audit_json.write_text(json.dumps(figures, indent=2, sort_keys=False) + "\n")
    return result


def audit_folder(
    source: Path,
    out_dir: Path,
    policy: IntegrityPolicy | None = None,
    html: bool = True,
    progress: Callable[[str], None] | None = None,
) -> AuditResult:
    """Audit an image folder in place (Kaggle layout or class folders), without ingestion.

    The manifest is built from the folder (`integrity.scan`) and written next to the audit
    as `manifest.csv`; files that do not decode are listed in `rejected.csv`.
    """
    from braintumor.integrity.scan import manifest_from_folder

    say = progress or (lambda message: None)
    started = time.perf_counter()
    say(f"reading and hashing the images under {source}")
    # Keep each image's small verification copy (16 KiB) so verification decodes nothing twice.
    images: dict[str, np.ndarray] = {}
    manifest, rejected = manifest_from_folder(
        Path(source),
        progress=lambda done, total: say(f"hashed {done}/{total} files"),
        on_image=lambda path, gray: images.__setitem__(path, verification_image(gray)),
    )
    hashing_s = round(time.perf_counter() - started, 2)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest.to_csv(out_dir / "manifest.csv", index=False, lineterminator="\n")
    rejected.to_csv(out_dir / "rejected.csv", index=False, lineterminator="\n")
    result = run_audit(
        Path(source), manifest, policy, out_dir, html=html, progress=progress, images=images
    )
    result.timings["hashing_s"] = hashing_s
    result.figures["rejected_files"] = rejected.to_dict(orient="records")
    result.figures["timings"] = result.timings
    result.audit_json.write_text(json.dumps(result.figures, indent=2) + "\n")
    return result


def audit_data_root(
    data_root: Path,
    out_dir: Path,
    policy: IntegrityPolicy | None = None,
    html: bool = True,
    progress: Callable[[str], None] | None = None,
) -> AuditResult:
    """Audit an ingested data root (`<data_root>/manifest.csv`, e.g. data/raw): the CLI's call.

    Raises `data.manifest.ManifestError` with the command to run when the manifest is missing.
    """
    from braintumor.data.manifest import read_manifest

    manifest = read_manifest(Path(data_root))
    return run_audit(Path(data_root), manifest, policy, Path(out_dir), html=html, progress=progress)


def summary_lines(result: AuditResult) -> list[str]:
    """A few lines for a terminal: what was found and where the files are."""
    figures = result.figures
    clusters, leakage = figures["clusters"], figures["leakage"]
    lines = [
        f"{figures['images']['total']} images: {clusters['clusters']} duplicate clusters, "
        f"{clusters['redundant_images']} redundant images, "
        f"{figures['label_conflicts']['clusters']} label conflicts (quarantined)",
    ]
    if leakage["testing_images"]:
        lines.append(
            f"{leakage['testing_with_training_twin']}/{leakage['testing_images']} Testing images "
            "have a Training twin"
        )
    if figures["shortcut"]["shortcut"]:
        lines.append(figures["shortcut"]["summary"])
    lines.append(f"splits ({figures['protocol']}): {result.splits_csv}")
    lines.append(f"figures: {result.audit_json}")
    if result.report_html:
        lines.append(f"report: {result.report_html}")
    return lines
