"""The train-step benchmark measures each TensorFlow runtime in its own process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from braintumor.training.runtime import BF16_CPU_FLAGS, cpu_flags


@pytest.mark.slow
def test_train_step_benchmark_times_oneDNN_off_and_on(tmp_path: Path) -> None:
    from benchmarks.train_step import main

    config = tmp_path / "tiny.yaml"
    training = {
        "preprocessing": {"image_size": 32, "channels": 1},
        "cnn": {"filters": [8, 16]},
        "batch_size": 4,
    }
    config.write_text(yaml.safe_dump({"training": training}))
    out = tmp_path / "train_step.json"
    main(["--config", str(config), "--steps", "1", "--repeats", "2", "--out", str(out)])

    report = json.loads(out.read_text())
    off, on = report["variants"]["float32, oneDNN off"], report["variants"]["float32, oneDNN on"]
    # Each child really ran with the switch it was given, on the config it was given.
    assert (off["onednn"], on["onednn"]) == (False, True)
    assert off["input_shape"] == [32, 32, 1] and off["batch_size"] == 4
    assert len(off["ms_per_image"]) == 2 and off["median_ms_per_image"] > 0
    assert off["speedup"] == 1.0
    assert on["speedup"] == pytest.approx(
        off["median_ms_per_image"] / on["median_ms_per_image"], abs=0.01
    )
    bf16 = report["variants"]["bfloat16, oneDNN on"]
    assert ("skipped" in bf16) == (not BF16_CPU_FLAGS & cpu_flags())
