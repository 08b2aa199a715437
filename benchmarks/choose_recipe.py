"""Choose between the cpu profile and a candidate recipe on validation figures only.

Reads two quality reports (benchmarks/quality.py): the baseline (the current profile's model,
e.g. scored with --score-model) and the candidate (trained by quality.py). The decision uses
each report's `validation` block of the `resplit` protocol, never a test figure:
- the candidate's validation weighted F1 is at most `--max-f1-drop` below the baseline's;
- its tumour sensitivity on T2-like validation slices (the sequence shortcut's victims) is at
  least the baseline's.

Writes `benchmarks/results/recipe_choice.json` (the figures that guided the choice, the rule,
the verdict). When the candidate wins, it also writes its report, with the choice, to
`benchmarks/results/quality.json`, the cpu profile's file.

    python benchmarks/choose_recipe.py \\
        --baseline benchmarks/results/quality_packaged_v4.json \\
        --candidate benchmarks/results/quality_appearance.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "benchmarks")]

from _common import RESULTS, header, write_results  # noqa: E402

PROTOCOL = "resplit"
SHORTCUT_GROUP = "t2_like"


def guiding_figures(report: dict[str, Any]) -> dict[str, Any]:
    validation = report["protocols"][PROTOCOL]["validation"]
    group = validation["per_appearance_group"].get(SHORTCUT_GROUP, {})
    return {
        "validation_weighted_f1": validation["weighted_f1"],
        "validation_per_class_recall": validation["per_class_recall"],
        "validation_t2_like_tumour_sensitivity": group.get("tumour_sensitivity"),
        "validation_t2_like_tumour_images": group.get("tumour_images", 0),
    }


def decide(baseline: dict[str, Any], candidate: dict[str, Any], max_f1_drop: float) -> dict:
    """Pure rule on the two reports' validation figures."""
    base, cand = guiding_figures(baseline), guiding_figures(candidate)
    reasons = []
    f1_ok = cand["validation_weighted_f1"] >= base["validation_weighted_f1"] - max_f1_drop
    reasons.append(
        f"validation weighted F1 {cand['validation_weighted_f1']:.4f} vs baseline "
        f"{base['validation_weighted_f1']:.4f} (allowed drop {max_f1_drop}): "
        + ("ok" if f1_ok else "too low")
    )
    b, c = (
        base["validation_t2_like_tumour_sensitivity"],
        cand["validation_t2_like_tumour_sensitivity"],
    )
    shortcut_ok = c is not None and b is not None and c >= b
    reasons.append(
        f"T2-like tumour sensitivity on validation {c} vs baseline {b} "
        f"({cand['validation_t2_like_tumour_images']} slices): "
        + ("ok" if shortcut_ok else "not better")
    )
    return {
        "adopt_candidate": bool(f1_ok and shortcut_ok),
        "reasons": reasons,
        "baseline": base,
        "candidate": cand,
        "rule": {
            "protocol": PROTOCOL,
            "split": "val",
            "max_f1_drop": max_f1_drop,
            "shortcut_group": SHORTCUT_GROUP,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, required=True)
    parser.add_argument("--candidate", type=Path, required=True)
    parser.add_argument("--max-f1-drop", type=float, default=0.01)
    parser.add_argument("--out", type=Path, default=RESULTS / "recipe_choice.json")
    parser.add_argument("--profile-out", type=Path, default=RESULTS / "quality.json")
    args = parser.parse_args(argv)
    baseline = json.loads(args.baseline.read_text())
    candidate = json.loads(args.candidate.read_text())
    choice = {
        **header("recipe_choice", __file__, argv),
        "baseline_file": str(args.baseline),
        "candidate_file": str(args.candidate),
        **decide(baseline, candidate, args.max_f1_drop),
    }
    write_results(choice, {}, args.out)
    if choice["adopt_candidate"]:
        args.profile_out.write_text(json.dumps({**candidate, "choice": choice}, indent=2) + "\n")
    print(
        ("ADOPT" if choice["adopt_candidate"] else "KEEP the profile")
        + ": "
        + "; ".join(choice["reasons"])
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
