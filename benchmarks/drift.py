"""Benchmark: how well the default drift policy separates real acquisition changes from chance,
on the full dataset, and what drift monitoring costs.

    python benchmarks/drift.py [--source PATH] [--alarm-repeats 50] [--detect-repeats 5]

- False alarms: a random sample of Training (50, 200, 1,000 images or half) against the rest of
  Training, many times: the share of checks that say "drift" (should be ~0).
- Detection: the same samples after one change of acquisition (darker, gamma, blur, half
  resolution, noise, and a subtle 10% darkening): the share of checks that catch it.
- Training vs the official Testing split (partly another source, as the research this project
  grew from found).
- Cost: features per 512x512 slice (the service's extra work per prediction when it logs),
  one log append, features for the whole Training set, one drift report.

Figures go to benchmarks/results/drift.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import FULL_DATASET, header, write_results

from braintumor.imaging import decode_image
from braintumor.monitoring.drift import DriftPolicy, drift_report
from braintumor.monitoring.features import feature_table, image_features, list_images
from braintumor.monitoring.prediction_log import append_prediction_log, prediction_record


def _gamma(gray: np.ndarray, gamma: float) -> np.ndarray:
    table = np.clip(255 * (np.arange(256) / 255) ** gamma, 0, 255).astype(np.uint8)
    return table[gray]


def _noise(gray: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    noisy = gray.astype(np.float32) + rng.normal(0, sigma, gray.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def transforms(rng: np.random.Generator) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    return {
        "darker_30pct": lambda g: (g * 0.7).astype(np.uint8),
        "darker_10pct": lambda g: (g * 0.9).astype(np.uint8),
        "gamma_0.7": lambda g: _gamma(g, 0.7),
        "blur_sigma2": lambda g: cv2.GaussianBlur(g, (0, 0), 2),
        "half_resolution": lambda g: cv2.resize(
            g, (g.shape[1] // 2, g.shape[0] // 2), interpolation=cv2.INTER_AREA
        ),
        "noise_sigma10": lambda g: _noise(g, 10, rng),
    }


def timed(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", type=Path, default=FULL_DATASET)
    parser.add_argument("--alarm-repeats", type=int, default=50, help="checks per sample size")
    parser.add_argument("--detect-repeats", type=int, default=5, help="checks per change")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    head = header("drift", __file__)
    if not (args.source / "Training").is_dir():
        sys.exit(f"dataset not found at {args.source}: pass --source")
    rng = np.random.default_rng(args.seed)
    policy = DriftPolicy()

    paths = list_images(args.source / "Training")
    start = time.perf_counter()
    training = feature_table(paths, skipped=[])
    features_s = time.perf_counter() - start
    testing = feature_table(list_images(args.source / "Testing"), skipped=[])
    print(f"features: {len(training)} training images in {features_s:.1f} s")

    slice_512 = next(
        g
        for g in (decode_image(p.read_bytes()).pixels for p in paths[:50])
        if g.shape == (512, 512)
    )
    per_image_ms = timed(lambda: image_features(slice_512), 200) * 1000
    record = prediction_record(
        [0.7, 0.1, 0.1, 0.1], model_version=1, features=image_features(slice_512)
    )
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "p.jsonl"
        append_us = timed(lambda: append_prediction_log(log, record), 500) * 1e6

    def check(reference, current) -> tuple[bool, float, float]:
        begin = time.perf_counter()
        result = drift_report(reference, current, policy=policy)
        return result.drifted, result.share_drifted, time.perf_counter() - begin

    false_alarms = {}
    report_seconds = []
    half = len(training) // 2
    for size in (50, 200, 1000, half):
        verdicts, shares = [], []
        for _ in range(args.alarm_repeats if size < 1000 else max(3, args.alarm_repeats // 4)):
            order = rng.permutation(len(training))
            current, reference = training.iloc[order[:size]], training.iloc[order[size:]]
            drifted, share, seconds = check(reference, current)
            verdicts.append(drifted)
            shares.append(share)
            report_seconds.append(seconds)
        false_alarms[str(size)] = {
            "checks": len(verdicts),
            "false_alarm_rate": sum(verdicts) / len(verdicts),
            "mean_share_drifted": round(statistics.mean(shares), 4),
            "max_share_drifted": round(max(shares), 4),
        }
        print(f"false alarms, {size} images: {false_alarms[str(size)]}")

    detection = {}
    repeats = args.detect_repeats
    for size in (50, 200):
        samples = []
        for _ in range(repeats):
            order = rng.permutation(len(paths))
            chosen, rest = order[:size], order[size:]
            grays = [decode_image(paths[i].read_bytes()).pixels for i in chosen]
            samples.append((grays, training.iloc[rest]))
        for name, transform in transforms(rng).items():
            verdicts, shares, columns = [], [], {}
            for grays, reference in samples:
                current = feature_table([transform(g) for g in grays])
                result = drift_report(reference, current, policy=policy)
                verdicts.append(result.drifted)
                shares.append(result.share_drifted)
                for column in result.drifted_columns:
                    columns[column] = columns.get(column, 0) + 1
            detection.setdefault(name, {})[str(size)] = {
                "checks": len(verdicts),
                "detection_rate": sum(verdicts) / len(verdicts),
                "mean_share_drifted": round(statistics.mean(shares), 4),
                "columns_drifted_in_most_checks": sorted(
                    c for c, n in columns.items() if n > len(verdicts) / 2
                ),
            }
            print(f"detection {name}, {size} images: {detection[name][str(size)]}")

    official = drift_report(training, testing, policy=policy)
    figures = {
        "dataset": str(args.source),
        "policy": policy.model_dump(),
        "training_images": len(training),
        "false_alarms": false_alarms,
        "detection": detection,
        "training_vs_official_testing": {
            "testing_images": len(testing),
            "drifted": official.drifted,
            "share_drifted": round(official.share_drifted, 4),
            "drifted_columns": official.drifted_columns,
        },
        "cost": {
            "image_features_ms_per_512px_slice": round(per_image_ms, 3),
            "append_prediction_log_us": round(append_us, 1),
            "training_set_features_s": round(features_s, 2),
            "training_set_images_per_s": round(len(training) / features_s, 1),
            "drift_report_s_median": round(statistics.median(report_seconds), 2),
        },
    }
    target = write_results(head, figures)
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
