"""The recipe choice reads validation figures only and applies its declared rule."""

from __future__ import annotations

import json
from pathlib import Path


def report(val_f1: float, t2_sensitivity: float | None, test_f1: float = 0.5) -> dict:
    return {
        "protocols": {
            "resplit": {
                "weighted_f1": test_f1,  # a test figure: must not matter
                "validation": {
                    "weighted_f1": val_f1,
                    "per_class_recall": {"glioma": 0.9},
                    "per_appearance_group": {
                        "t2_like": {"tumour_sensitivity": t2_sensitivity, "tumour_images": 14}
                    },
                },
            }
        }
    }


def test_the_candidate_wins_only_on_validation_figures() -> None:
    from benchmarks.choose_recipe import decide

    baseline = report(0.915, 0.786, test_f1=0.99)
    assert decide(baseline, report(0.910, 0.857), 0.01)["adopt_candidate"]
    assert not decide(baseline, report(0.900, 0.929), 0.01)["adopt_candidate"]  # F1 dropped
    assert not decide(baseline, report(0.930, 0.714), 0.01)["adopt_candidate"]  # shortcut
    assert not decide(baseline, report(0.930, None), 0.01)["adopt_candidate"]
    # A far better test figure does not change the verdict.
    assert decide(baseline, report(0.910, 0.857, test_f1=0.1), 0.01)["adopt_candidate"]


def test_adopting_writes_the_profile_file_with_the_choice(tmp_path: Path) -> None:
    from benchmarks.choose_recipe import main

    base, cand = tmp_path / "base.json", tmp_path / "cand.json"
    base.write_text(json.dumps(report(0.915, 0.786)))
    cand.write_text(json.dumps(report(0.92, 0.9)))
    out, profile = tmp_path / "choice.json", tmp_path / "quality.json"
    args = ["--baseline", str(base), "--candidate", str(cand), "--out", str(out)]
    assert main([*args, "--profile-out", str(profile)]) == 0
    choice = json.loads(out.read_text())
    assert choice["adopt_candidate"] and choice["rule"]["split"] == "val"
    assert json.loads(profile.read_text())["choice"]["candidate"]["validation_weighted_f1"] == 0.92

    cand.write_text(json.dumps(report(0.80, 0.9)))
    profile.unlink()
    assert main([*args, "--profile-out", str(profile)]) == 0
    assert not json.loads(out.read_text())["adopt_candidate"] and not profile.exists()
