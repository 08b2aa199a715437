"""Benchmark: CPU training throughput of the cpu profile's network, by TensorFlow runtime.

    python benchmarks/train_step.py [--config configs/cpu.yaml] [--steps 15] [--repeats 3]

One optimiser step (`train_on_batch`, the profile's batch size, image size and network, AdamW)
on a random batch, timed after warm-up, in a fresh process per variant because TensorFlow
reads its settings at import:
- `float32, oneDNN off`: TF_ENABLE_ONEDNN_OPTS=0, TensorFlow's own default on CPUs without
  AVX512_VNNI, AVX512_BF16 or AMX;
- `float32, oneDNN on`: TF_ENABLE_ONEDNN_OPTS=1, what `import braintumor` sets unless the
  user set it;
- `bfloat16` (mixed_bfloat16 policy): only where the CPU has native bfloat16 (the trainer's
  rule); elsewhere it is listed as skipped with the reason.

Writes benchmarks/results/train_step.json: per variant the median milliseconds per image over
the repeats, every repeat, and the speed-up against `float32, oneDNN off`. It measures the
step alone: a real epoch adds augmentation, validation and the EMA (see quality.json).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO_ROOT, header, write_results

from braintumor.training.runtime import BF16_CPU_FLAGS, cpu_flags

VARIANTS = {
    "float32, oneDNN off": {"onednn": "0", "policy": "float32"},
    "float32, oneDNN on": {"onednn": "1", "policy": "float32"},
    "bfloat16, oneDNN on": {"onednn": "1", "policy": "mixed_bfloat16"},
}

# Runs in the child: TF_ENABLE_ONEDNN_OPTS is already in its environment.
CHILD = """
import json, sys, time
import numpy as np
sys.path.insert(0, {src!r})
sys.path.insert(0, {benchmarks!r})
import keras
from quality import training_block
from braintumor.training.config import TrainingConfig
from braintumor.training.trainer import build_model, make_optimizer
from tensorflow.python.util import _pywrap_util_port

config = TrainingConfig.model_validate(training_block(__import__("pathlib").Path({config!r})))
keras.config.set_dtype_policy({policy!r})
keras.utils.set_random_seed(0)
model = build_model(config, 4)
model.compile(optimizer=make_optimizer(config.optimizer, 1e-3, config.weight_decay),
              loss="categorical_crossentropy")
rng = np.random.default_rng(0)
x = rng.random((config.batch_size, *config.input_shape()), dtype=np.float32)
y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, config.batch_size)]
for _ in range(3):
    model.train_on_batch(x, y)
times = []
for _ in range({repeats}):
    start = time.perf_counter()
    for _ in range({steps}):
        model.train_on_batch(x, y)
    times.append((time.perf_counter() - start) / {steps} / config.batch_size * 1000)
print(json.dumps({{"ms_per_image": times, "onednn": _pywrap_util_port.IsMklEnabled(),
                  "batch_size": config.batch_size, "input_shape": config.input_shape()}}))
"""


def run_variant(config: Path, onednn: str, policy: str, steps: int, repeats: int) -> dict:
    code = CHILD.format(
        src=str(REPO_ROOT / "src"),
        benchmarks=str(REPO_ROOT / "benchmarks"),
        config=str(config),
        policy=policy,
        steps=steps,
        repeats=repeats,
    )
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": onednn, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"variant failed ({onednn=}, {policy=}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "configs" / "cpu.yaml")
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/train_step.json")
    args = parser.parse_args(argv)
    head = header("train_step", __file__, argv)
    native_bf16 = sorted(BF16_CPU_FLAGS & cpu_flags())
    results: dict[str, dict] = {}
    for name, variant in VARIANTS.items():
        if variant["policy"] == "mixed_bfloat16" and not native_bf16:
            results[name] = {"skipped": "this CPU has no native bfloat16 (avx512_bf16/amx_bf16)"}
            continue
        measured = run_variant(
            args.config, variant["onednn"], variant["policy"], args.steps, args.repeats
        )
        measured["median_ms_per_image"] = round(statistics.median(measured["ms_per_image"]), 2)
        measured["ms_per_image"] = [round(t, 2) for t in measured["ms_per_image"]]
        results[name] = measured
        print(f"{name}: {measured['median_ms_per_image']} ms/image", flush=True)
    baseline = results["float32, oneDNN off"]["median_ms_per_image"]
    for measured in results.values():
        if "median_ms_per_image" in measured:
            measured["speedup"] = round(baseline / measured["median_ms_per_image"], 2)
    path = write_results(
        head,
        {
            "config": os.path.relpath(args.config.resolve(), REPO_ROOT),
            "native_bf16_flags": native_bf16,
            "steps_per_repeat": args.steps,
            "variants": results,
        },
        args.out,
    )
    print(f"figures written to {path}")


if __name__ == "__main__":
    main()
