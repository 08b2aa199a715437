"""The data audit: duplicates, label conflicts, leakage, shortcuts, and the splits.

`run_audit(data_root, manifest, policy, out_dir)` writes into `out_dir`:
- `splits.csv`: the leakage-free splits of `policy.protocol` (see `integrity.splits`);
- `audit.json`: every figure, for machines (`shortcut`: file metadata; `appearance_shortcut`:
  image appearance such as the sequence type, see `integrity.appearance`);
- `report.html`: the same figures with example pairs, one self-contained file.

The manifest is ingestion's (`braintumor.data.ingest.ingest`, or `data.manifest.read_manifest`
on an ingested folder such as data/raw): its fingerprints are computed once there, and files
that do not decode are already quarantined there. `braintumor data audit` is the command.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from braintumor.constants import PROTOCOL_OFFICIAL, PROTOCOL_RESPLIT, SPLITS_FILE
from braintumor.integrity.appearance import audit_appearance
from braintumor.integrity.dedup import Duplicates, find_duplicates
from braintumor.integrity.figures import audit_figures
from braintumor.integrity.images import read_images
from braintumor.integrity.policy import IntegrityPolicy
from braintumor.integrity.verify import load_gray

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
) -> AuditResult:
    """Audit the images of `manifest` (paths relative to `data_root`) and write the results.

    The resplit and (when the data has a Testing split) official splits are always computed,
    so the figures compare them, and leave-source-out when the policy asks for it;
    `splits.csv` holds the one `policy.protocol` names.
    """
    from braintumor.integrity.splits import make_splits

    policy = policy or IntegrityPolicy()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = manifest.sort_values("path").reset_index(drop=True)
    say = progress or (lambda message: None)
    timings: dict[str, float] = {}

    started = time.perf_counter()
    say(f"reading {len(manifest)} images")
    images = read_images(data_root, manifest["path"].tolist(), loader)
    timings["read_images_s"] = round(time.perf_counter() - started, 2)

    started = time.perf_counter()
    say(f"searching near duplicates among {len(manifest)} images")
    duplicates = find_duplicates(
        data_root,
        manifest,
        policy,
        loader=loader,
        progress=lambda done, total: say(f"verified {done}/{total} candidate pairs"),
        images=images.verification,
    )
    timings["duplicates_s"] = round(time.perf_counter() - started, 2)

    started = time.perf_counter()
    by_protocol = {}
    for protocol in (PROTOCOL_RESPLIT, PROTOCOL_OFFICIAL):
        if protocol == PROTOCOL_OFFICIAL and not (manifest["split"] == "testing").any():
            continue
        variant = policy.model_copy(update={"protocol": protocol})
        by_protocol[protocol] = make_splits(manifest, duplicates.cluster_ids, variant)
    if policy.protocol not in by_protocol:  # leave-source-out
        by_protocol[policy.protocol] = make_splits(manifest, duplicates.cluster_ids, policy)
    splits = by_protocol[policy.protocol]
    timings["splits_s"] = round(time.perf_counter() - started, 2)

    started = time.perf_counter()
    figures = audit_figures(manifest, duplicates, by_protocol, policy)
    timings["figures_s"] = round(time.perf_counter() - started, 2)
    started = time.perf_counter()
    say(f"measuring the appearance of {len(manifest)} images")
    figures["appearance_shortcut"] = audit_appearance(
        data_root, manifest, loader=loader, seed=policy.seed, features=images.appearance
    )
    timings["appearance_s"] = round(time.perf_counter() - started, 2)
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
