"""Two public sources merged: what the cross-source audit finds, and how long it takes.

Ingests the Kaggle set (`--kaggle`) as source `kaggle`, adds the figshare/Br35H set
(`--second`) with `braintumor data add --source figshare-br35h`, then times
`braintumor data audit` (HTML report included) on the merged 7,828 images, as a user runs
them. Writes `benchmarks/results/sources.json`: the audit's wall time and its own timings,
the cross-source figures of `audit.json` (shared images source x source, images unique to
each source, exact / near / mirrored pairs across sources, label conflicts across sources),
the kept images per source and split, the command, the commit and the machine.

    python benchmarks/sources.py [--train figshare-br35h kaggle pooled]

`--train` then trains the cpu profile (configs/cpu.yaml, as benchmarks/quality.py does) on
the merged set's duplicate clusters: `leave-source-out` holding out each named source (train
and validate on the other, test on the held-out images without a copy in it), and `pooled`
(the resplit protocol over both sources, with figures per source). About 75-140 min each
on 2 cores; figures of an earlier run with the same config are kept in the file.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO), str(REPO / "benchmarks")]

from _common import header, write_results  # noqa: E402

SHARED = REPO.parent / "shared" / "datasets"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "sources.json"
SECOND_NAME = "figshare-br35h"
KAGGLE_NAME = "kaggle"
POOLED = "pooled"


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


def train_and_test(
    raw: Path, resplit_csv: Path, names: list[str], out: Path, commit: str
) -> dict[str, dict[str, Any]]:
    """The cpu profile trained and tested per name (see the module docstring), keeping an
    earlier file's figures for the other names when they come from the same config."""
    import pandas as pd

    from benchmarks.quality import CPU_PROFILE_FILE, run_protocol, training_block
    from braintumor.constants import PROTOCOL_LEAVE_SOURCE_OUT
    from braintumor.data.manifest import read_manifest
    from braintumor.integrity.policy import IntegrityPolicy, with_protocol
    from braintumor.integrity.splits import make_splits
    from braintumor.params import load_params
    from braintumor.training.config import TrainingConfig

    config = TrainingConfig.model_validate(training_block(CPU_PROFILE_FILE))
    dumped = config.model_dump(mode="json")
    previous = json.loads(out.read_text()) if out.is_file() else {}
    kept = previous.get("training", {}) if previous.get("training_config") == dumped else {}
    results: dict[str, Any] = dict(kept.get("results", {}))
    manifest = read_manifest(raw)
    clusters = pd.read_csv(resplit_csv, usecols=["path", "cluster_id"])
    integrity = load_params(REPO / "params.yaml").get("integrity")
    for name in names:
        if name == POOLED:
            splits_csv = resplit_csv
            protocol = "resplit"
        else:
            policy = IntegrityPolicy.from_dict(
                with_protocol(integrity, PROTOCOL_LEAVE_SOURCE_OUT, name)
            )
            splits_csv = resplit_csv.with_name(f"splits_{name}.csv")
            make_splits(manifest, clusters, policy).to_csv(splits_csv, index=False)
            protocol = PROTOCOL_LEAVE_SOURCE_OUT
        started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        figures = run_protocol(protocol, splits_csv, raw, config, out, name=f"{protocol}_{name}")
        figures.update(git_commit=commit, started=started, load_average_at_end=os.getloadavg())
        results[name if name == POOLED else f"holdout_{name}"] = figures
    if not results:
        return {"training": "not run (--train)"}
    training = {"profile": "configs/cpu.yaml", "results": results}
    return {"training": training, "training_config": dumped}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kaggle", type=Path, default=SHARED / "brain-tumor-classification-mri")
    parser.add_argument("--second", type=Path, default=SHARED / SECOND_NAME)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--train",
        nargs="+",
        default=[],
        metavar="NAME",
        help=f"train and test: a source to hold out ({KAGGLE_NAME}, {SECOND_NAME}) or pooled",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    unknown = sorted(set(args.train) - {KAGGLE_NAME, SECOND_NAME, POOLED})
    if unknown:
        parser.error(f"--train takes {KAGGLE_NAME}, {SECOND_NAME} or {POOLED}, not {unknown}")
    for folder in (args.kaggle, args.second):
        if not folder.is_dir():
            parser.error(f"{folder} is not a folder: give --kaggle / --second")
    head = header("sources", __file__, argv)  # the code that runs, not the tree at the end
    commit = str(head["git_commit"])
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
        trained = train_and_test(raw, audit / "splits.csv", args.train, args.out, commit)
    sources = figures["sources"]
    report: dict[str, Any] = {
        "load_average": {"before_audit": load, "at_end": list(os.getloadavg())},
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
        **trained,
    }
    write_results(head, report, args.out)
    shared = sources["shared_images"]
    total = report["images"]["total"] if isinstance(report["images"], dict) else report["images"]
    print(f"audit of {total} images: {audit_s:.1f} s; shared images {shared}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
