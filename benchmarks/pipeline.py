"""Benchmark: wall time of the training pipeline, fresh and fully cached.

    python benchmarks/pipeline.py [--configs smoke cpu] [--data PATH]

For each config: a fresh run (every step runs: an empty ZenML store in a temp dir, and the data
ingested into a folder of its own, so nothing comes from an earlier config's cache), then the
same run again (every step's inputs unchanged: served from ZenML's cache). Target here: a
cached re-run in under 30 s. Figures go to benchmarks/results/pipeline.json. The cpu config
trains for real (tens of minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import FULL_DATASET, REPO_ROOT, header, write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--configs", nargs="+", default=["smoke", "cpu"])
    parser.add_argument("--data", default=str(FULL_DATASET), help="dataset to ingest")
    args = parser.parse_args()
    head = header("pipeline", __file__)  # before this run rewrites pipeline.json
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

    results = {}
    for name in args.configs:
        config = REPO_ROOT / "configs" / f"{name}.yaml"
        # A folder of its own per config: its data steps' parameters differ from the earlier
        # config's, so the fresh run runs every step (none from the earlier config's cache).
        data = ingest(args.data, out_dir=home / "data" / name / "raw").out_dir
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
        # after each config, so a long cpu run keeps the smoke figures
        target = write_results(head, {"data": args.data, "configs": results})
        print(f"-> {target}", flush=True)


if __name__ == "__main__":
    main()
