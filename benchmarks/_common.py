"""Shared bits of the benchmark scripts: where results go, and the header every results file
starts with (the exact command, the commit, the start time and the machine)."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from braintumor.lineage import git_commit
from braintumor.training.runtime import cpu_flags

RESULTS = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parents[1]
FULL_DATASET = Path(
    os.environ.get(
        "BRAINTUMOR_FULL_DATASET",
        REPO_ROOT.parent / "shared" / "datasets" / "brain-tumor-classification-mri",
    )
)
# What `header` writes at the top of every results file (tests/test_benchmark_results.py
# checks each file for them).
HEADER_KEYS = ("benchmark", "command", "git_commit", "measured_at", "machine")
MACHINE_KEYS = ("cpu", "cpu_cores", "cpu_speed_flags", "ram_gib", "platform", "python")
# Instruction sets that change how fast TensorFlow / ONNX Runtime run here (int8 and bfloat16
# kernels in particular), and the settings that switch kernels on or off.
SPEED_FLAGS = frozenset(
    {"avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16"}
)
SPEED_SETTINGS = ("TF_ENABLE_ONEDNN_OPTS", "OMP_NUM_THREADS")


def _proc_field(path: str, key: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine() -> dict[str, object]:
    mem_kib = _proc_field("/proc/meminfo", "MemTotal")
    return {
        "cpu": _proc_field("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        "cpu_cores": os.cpu_count(),
        "cpu_speed_flags": sorted(SPEED_FLAGS & cpu_flags()),
        "ram_gib": round(int(mem_kib.split()[0]) / 2**20, 1) if mem_kib else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "speed_settings": {k: os.environ[k] for k in SPEED_SETTINGS if k in os.environ},
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


# --- the Bento that `make run` built (BentoML store: BENTOML_HOME, default ~/bentoml) ----------


def newest_bento() -> str:
    """The tag of the newest brain-tumour Bento in the BentoML store."""
    import bentoml

    from braintumor.constants import BENTO_SERVICE_NAME

    bentos = sorted(bentoml.list(BENTO_SERVICE_NAME), key=lambda b: b.info.creation_time)
    if not bentos:
        raise SystemExit(
            f"no {BENTO_SERVICE_NAME} Bento in the BentoML store: run `make run` first"
        )
    return str(bentos[-1].tag)


def pinned_model(bento_tag: str) -> tuple[str, Path]:
    """The tag and store folder of the one model a Bento packages."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        bento = bentoml.get(bento_tag)
    except NotFound:
        raise SystemExit(f"no Bento {bento_tag!r} in the BentoML store") from None
    (model,) = bento.info.all_models
    return str(model.tag), Path(bentoml.models.get(model.tag).path)


# --- the header of every results file --------------------------------------------------------


def header(name: str, script: str, argv: Sequence[str] | None = None) -> dict[str, object]:
    """The header of results file `name`, taken when the run starts (so the commit is the code
    that ran, not a tree the run has since dirtied by writing its own file). `script` is the
    benchmark's `__file__`; `argv` its arguments (default: this process's). `git_commit` ends in
    `-dirty` when tracked files differed from the commit."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    script_path = Path(script).resolve().relative_to(REPO_ROOT).as_posix()
    return {
        "benchmark": name,
        "command": shlex.join(["python", script_path, *arguments]),
        "git_commit": git_commit(REPO_ROOT),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
    }


def write_results(
    head: dict[str, object], figures: dict[str, object], target: Path | None = None
) -> Path:
    """Write the header `head` and `figures` to `target` (default results/<benchmark>.json)."""
    target = target or RESULTS / f"{head['benchmark']}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps({**head, **figures}, indent=2) + "\n")
    return target
