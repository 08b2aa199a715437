"""Two public sources merged: what the cross-source audit finds, and how long it takes.

Ingests the Kaggle set (`--kaggle`) as source `kaggle`, adds the figshare/Br35H set
(`--second`) with `braintumor data add --source figshare-br35h`, then times
`braintumor data audit` (HTML report included) on the merged 7,828 images, as a user runs
them. Writes `benchmarks/results/sources.json`: the audit's wall time and its own timings,
the cross-source figures of `audit.json` (shared images source x source, images unique to
each source, exact / near / mirrored pairs across sources, label conflicts across sources),
the kept images per source and split, the command, the commit and the machine.

    python benchmarks/sources.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from braintumor.lineage import git_commit  # noqa: E402

SHARED = REPO.parent / "shared" / "datasets"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "sources.json"
SECOND_NAME = "figshare-br35h"


def cli(*args: str) -> float:
    """Run `braintumor ARGS` (this checkout's code); return its wall time in seconds."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "braintumor.cli", *args],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kaggle", type=Path, default=SHARED / "brain-tumor-classification-mri")
    parser.add_argument("--second", type=Path, default=SHARED / SECOND_NAME)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    for folder in (args.kaggle, args.second):
        if not folder.is_dir():
            parser.error(f"{folder} is not a folder: give --kaggle / --second")
    with tempfile.TemporaryDirectory(prefix="sources-") as tmp:
        raw, audit = Path(tmp) / "raw", Path(tmp) / "audit"
        ingest_s = cli("data", "ingest", str(args.kaggle), "--out", str(raw))
        add_s = cli(
            "data", "add", str(args.second), "--source", SECOND_NAME, "--data", str(raw),
            "--no-dvc",
        )  # fmt: skip
        load = list(os.getloadavg())
        audit_s = cli("data", "audit", "--data", str(raw), "--out", str(audit))
        figures = json.loads((audit / "audit.json").read_text())
    sources = figures["sources"]
    report: dict[str, Any] = {
        "benchmark": "sources",
        "command": " ".join(["python", "benchmarks/sources.py", *(argv or sys.argv[1:])]),
        "git_commit": git_commit(REPO),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cores": os.cpu_count(),
            "load_average_before_audit": load,
            "load_average_after": list(os.getloadavg()),
        },
        "images": figures.get(
            "images", sum(sum(c.values()) for c in sources["images_by_source_class"].values())
        ),
        "seconds": {
            "ingest_kaggle": round(ingest_s, 1),
            "add_second_source": round(add_s, 1),
            "audit_wall": round(audit_s, 1),
            "audit_target": 90,
        },
        "audit_timings": figures.get("timings"),
        "sources": sources,
        "leave_source_out": "not measured: the leave-source-out protocol is not built yet",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    shared = sources["shared_images"]
    total = report["images"]["total"] if isinstance(report["images"], dict) else report["images"]
    print(f"audit of {total} images: {audit_s:.1f} s; shared images {shared}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
