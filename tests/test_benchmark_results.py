"""Every file in benchmarks/results/ says what made it: the command, the commit, the time and the
machine (`benchmarks/_common.header`), and holds figures only, no free-text notes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks._common import HEADER_KEYS, MACHINE_KEYS, RESULTS, header

SPLITS = "--splits-resplit data/audit_resplit/splits.csv"
OFFICIAL = "--splits-official data/audit_official/splits.csv"
QUALITY = f"python benchmarks/quality.py --data-root data/raw {SPLITS}"

# Files written before the shared header, kept because the README quotes them, and not re-run
# since (most need an hour or more of training on the 2-core machine): what each lacks, and the
# command that rewrites it complete. A file re-run with the header must leave this list (the
# test below fails until it does), and so must a file that is deleted.
PREDATE_HEADER = {
    # quality.py before the header: no command, the time as `started`, the machine without RAM;
    # free-text notes (their context is in the README). Two 60-epoch trainings, one per
    # protocol: about an hour each with bfloat16 (AVX512_BF16), longer without.
    "quality.json": f"{QUALITY} {OFFICIAL}",
    # No command, `started`, no RAM. 30 epochs of the appearance candidate: about 45 minutes.
    "quality_appearance.json": (
        f"{QUALITY} --config benchmarks/candidates/appearance.yaml "
        "--out benchmarks/results/quality_appearance.json"
    ),
    # No command, `started`, no RAM, free-text notes. 90 epochs: about 50 minutes with bfloat16.
    "quality_e90_epochs.json": (
        f"{QUALITY} --set epochs=90 --set refit_class_bias=false "
        "--out benchmarks/results/quality_e90_epochs.json"
    ),
    # `started`, no CPU flags or RAM, a free-text note. 60 epochs: about 35 minutes with bfloat16.
    "quality_ema_bf16_ls.json": (
        f"{QUALITY} --set label_smoothing=0.1 --set refit_class_bias=false "
        "--out benchmarks/results/quality_ema_bf16_ls.json"
    ),
    # No command, `started`, no CPU flags or RAM. The profile before the weight average: two
    # 60-epoch trainings in float32, about two hours.
    "quality_previous_profile.json": (
        f"{QUALITY} {OFFICIAL} --set ema_decay=0 --set 'mixed_precision=\"auto\"' "
        "--set refit_class_bias=false --out benchmarks/results/quality_previous_profile.json"
    ),
}

NOTE_KEYS = ("note", "notes")


def has_header(report: dict) -> list[str]:
    """What `report` lacks of the header, and the note keys it holds (empty: complete)."""
    problems = [key for key in HEADER_KEYS if not report.get(key)]
    machine = report.get("machine")
    if isinstance(machine, dict):
        problems += [f"machine.{key}" for key in MACHINE_KEYS if key not in machine]
    return problems + [f"{path} (a note)" for path in note_keys(report)]


def note_keys(value: object, path: str = "") -> list[str]:
    if isinstance(value, dict):
        found = [f"{path}{k}" for k in value if k in NOTE_KEYS or k.endswith("_note")]
        for key, inner in value.items():
            found += note_keys(inner, f"{path}{key}.")
        return found
    if isinstance(value, list):
        return [hit for item in value for hit in note_keys(item, path)]
    return []


def results_files() -> list[Path]:
    return sorted(RESULTS.glob("*.json"))


def test_the_helper_writes_every_header_field() -> None:
    head = header("check", __file__, ["--flag", "two words"])
    assert tuple(head) == HEADER_KEYS
    assert head["command"] == "python tests/test_benchmark_results.py --flag 'two words'"
    assert set(MACHINE_KEYS) <= set(head["machine"]) and head["machine"]["cpu_cores"] >= 1
    assert head["git_commit"] and head["measured_at"].startswith("20")
    assert not has_header(head)


@pytest.mark.parametrize("path", results_files(), ids=lambda p: p.name)
def test_every_results_file_records_how_it_was_made(path: Path) -> None:
    report = json.loads(path.read_text())
    missing = has_header(report)
    if path.name in PREDATE_HEADER:
        assert missing, f"{path.name} now has the full header: remove it from PREDATE_HEADER"
    else:
        assert not missing, f"{path.name} lacks {missing}"


def test_the_files_that_predate_the_header_are_still_there() -> None:
    names = {path.name for path in results_files()}
    gone = sorted(set(PREDATE_HEADER) - names)
    assert not gone, f"gone from benchmarks/results/, remove from PREDATE_HEADER: {gone}"
    assert all(command.startswith("python benchmarks/") for command in PREDATE_HEADER.values())
