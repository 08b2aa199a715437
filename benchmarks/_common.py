"""Shared bits of the benchmark scripts: where results go and what machine made them."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path

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


def git_commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    return done.stdout.strip() or "unknown"


def write_results(name: str, figures: dict[str, object], command: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    target = RESULTS / f"{name}.json"
    payload = {
        "benchmark": name,
        "command": command,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "machine": machine(),
        **figures,
    }
    target.write_text(json.dumps(payload, indent=2) + "\n")
    return target
