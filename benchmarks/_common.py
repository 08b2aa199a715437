"""Shared bits of the benchmark scripts: where results go and what machine made them."""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path

from braintumor.lineage import git_commit

RESULTS = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parents[1]
FULL_DATASET = Path(
    os.environ.get(
        "BRAINTUMOR_FULL_DATASET",
        REPO_ROOT.parent / "shared" / "datasets" / "brain-tumor-classification-mri",
    )
)


def machine() -> dict[str, object]:
    return {
        "cpu_cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": list(os.getloadavg()),
    }


def write_results(
    name: str,
    figures: dict[str, object],
    command: str,
    target: Path | None = None,
    commit: str | None = None,
) -> Path:
    """Write `figures` with the command, time, machine and commit (`commit`: taken before the
    run, for benchmarks that rewrite their own results file as they go)."""
    target = target or RESULTS / f"{name}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "command": command,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": commit or git_commit(REPO_ROOT),
        "machine": machine(),
        **figures,
    }
    target.write_text(json.dumps(payload, indent=2) + "\n")
    return target
