"""Benchmark: ingest the full dataset and run the CLAHE stage; wall time and images/s.

    python benchmarks/data.py [--source PATH] [--repeats 3]

Targets on the reference machine (2 cores): ingestion < 30 s and CLAHE < 30 s for 3,264 images.
Figures go to benchmarks/results/data.json (the median of the repeats, and every run).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import FULL_DATASET, header, write_results

from braintumor.data.clahe_stage import derive_clahe
from braintumor.data.ingest import ingest
from braintumor.params import clahe_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", default=str(FULL_DATASET))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    head = header("data", __file__)
    if not Path(args.source).exists():
        sys.exit(f"dataset not found at {args.source}: pass --source")
    spec = clahe_params(Path(__file__).resolve().parents[1] / "params.yaml").spec()
    runs = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            result = ingest(args.source, out_dir=Path(tmp) / "raw")
            ingest_s = time.perf_counter() - start
            start = time.perf_counter()
            derived = derive_clahe(Path(tmp) / "raw", Path(tmp) / "clahe", spec)
            clahe_s = time.perf_counter() - start
        images = len(result.manifest) + len(result.quarantine)
        runs.append(
            {
                "images": images,
                "ingest_s": round(ingest_s, 2),
                "clahe_s": round(clahe_s, 2),
                "clahe_images": len(derived),
            }
        )
        print(runs[-1], flush=True)
    ingest_s = statistics.median(r["ingest_s"] for r in runs)
    clahe_s = statistics.median(r["clahe_s"] for r in runs)
    images = runs[0]["images"]
    figures = {
        "images": images,
        "ingest": {"wall_s": ingest_s, "images_per_s": round(images / ingest_s, 1), "target_s": 30},
        "clahe": {
            "wall_s": clahe_s,
            "images_per_s": round(images / clahe_s, 1),
            "target_s": 30,
            "settings": spec.to_dict(),
        },
        "runs": runs,
    }
    target = write_results(head, figures)
    print(f"ingest {ingest_s:.1f} s, clahe {clahe_s:.1f} s for {images} images -> {target}")


if __name__ == "__main__":
    main()
