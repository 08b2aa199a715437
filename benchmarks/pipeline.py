"""Benchmark: wall time of the training pipeline, fresh and fully cached.

    python benchmarks/pipeline.py [--configs smoke cpu] [--data PATH]

For each config: a fresh run (empty ZenML store in a temp dir), then the same run again
(every step's inputs unchanged: served from ZenML's cache). Target here: a cached re-run in
under 30 s. Figures go to benchmarks/results/pipeline.json. The cpu config trains for real
(tens of minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import FULL_DATASET, REPO_ROOT, git_commit, write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--configs", nargs="+", default=["smoke", "cpu"])
    parser.add_argument("--data", default=str(FULL_DATASET), help="dataset to ingest")
    args = parser.parse_args()
    commit = git_commit(REPO_ROOT)  # before this run rewrites pipeline.json (dirtying the tree)
    home = Path(tempfile.mkdtemp(prefix="braintumor-bench-"))
    os.environ.update(
        ZENML_CONFIG_PATH=str(home / "zenml"),
        BENTOML_HOME=str(home / "bentoml"),
        BRAINTUMOR_ARTIFACT_CACHE=str(home / "artifacts"),
        ZENML_ANALYTICS_OPT_IN="false",
        BENTOML_DO_NOT_TRACK="true",
    )
    os.chdir(REPO_ROOT)
    from zenml.client import Client

    from braintumor.data.ingest import ingest
    from braintumor_zenml.launch import launch_training

    data = ingest(args.data, out_dir=home / "data" / "raw").out_dir
    results = {}
    for name in args.configs:
        config = REPO_ROOT / "configs" / f"{name}.yaml"
        timings = {}
        for attempt in ("fresh", "cached"):
            start = time.perf_counter()
            outcome = launch_training(config, data, report_dir=home / "reports")
            timings[f"{attempt}_wall_s"] = round(time.perf_counter() - start, 1)
            run = Client().get_pipeline_run(outcome.run_name)
            statuses = {step: s.status.value for step, s in run.steps.items()}
            timings[f"{attempt}_steps_run"] = sorted(
                k for k, v in statuses.items() if v != "cached"
            )
            print(name, attempt, timings[f"{attempt}_wall_s"], "s", flush=True)
        timings.update(
            winner=outcome.winner,
            test_weighted_f1=outcome.test_metrics.get("weighted_f1"),
            gate=outcome.decision.get("summary"),
            cached_target_s=30,
        )
        results[name] = timings
        target = write_results(  # after each config, so a long cpu run keeps the smoke figures
            "pipeline",
            {"data": args.data, "configs": results},
            f"python benchmarks/pipeline.py --configs {' '.join(args.configs)}",
            commit=commit,
        )
        print(f"-> {target}", flush=True)


if __name__ == "__main__":
    main()
