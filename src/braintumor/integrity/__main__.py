"""`python -m braintumor.integrity SOURCE [--out DIR] [--protocol resplit|official]`.

Audits an image folder in place (Kaggle layout or one folder per class) and writes
manifest.csv, splits.csv, audit.json and report.html to DIR. The product's CLI is
`braintumor data audit`; this entry point needs no ingestion and no CLI wiring.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from braintumor.integrity.audit import audit_folder, summary_lines
from braintumor.integrity.policy import IntegrityPolicy, IntegrityPolicyError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m braintumor.integrity", description=__doc__)
    parser.add_argument("source", type=Path, help="image folder (Kaggle layout or class folders)")
    parser.add_argument("--out", type=Path, default=Path("data/audit"), help="output folder")
    parser.add_argument("--protocol", choices=("resplit", "official"), default="resplit")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--no-html", action="store_true", help="skip report.html")
    args = parser.parse_args(argv)
    try:
        policy = IntegrityPolicy.from_dict({"protocol": args.protocol, "seed": args.seed})
        result = audit_folder(
            args.source,
            args.out,
            policy,
            html=not args.no_html,
            progress=lambda m: print(m, file=sys.stderr),
        )
    except (IntegrityPolicyError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for line in summary_lines(result):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
