"""Near-duplicate search at scale, and the full-dataset audit: wall times to a JSON file.

    python benchmarks/dedup.py                      # 100k synthetic hashes + the full audit
    python benchmarks/dedup.py --skip-dataset       # synthetic part only

Synthetic part: 100,000 random 64-bit hashes, of which 10,000 are planted near duplicates of
others (0 to 8 flipped bits) and 2,000 more are planted mirrored matches (the copy's mirrored
hash is within 8 bits of the original). The multi-index search (`integrity.index`) finds the
pairs within 8 bits, direct and mirrored, then `integrity.clusters` groups them. Reported:
wall time (best and median of the repeats), candidate pairs, recall of the planted pairs,
peak resident memory. No all-pairs matrix is ever built (100k x 100k would be 10^10 cells).

Dataset part (when present): the Kaggle set is ingested once (`data.ingest.ingest`, which
decodes every file and caches its fingerprints in the manifest; timed apart), then the audit
is timed as `braintumor data audit` runs it: `read_manifest` + `integrity.audit.run_audit` on
the ingested folder, with its stage timings (duplicate search and verification, splits,
figures, HTML report).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "benchmarks")]

from _common import FULL_DATASET, RESULTS, header, write_results  # noqa: E402

from braintumor.integrity.clusters import connected_clusters  # noqa: E402
from braintumor.integrity.index import choose_chunks, pairs_within  # noqa: E402


def _flip_random_bits(values: np.ndarray, counts: np.ndarray, rng) -> np.ndarray:
    out = values.copy()
    for k, flips in enumerate(counts):
        mask = 0
        for bit in rng.choice(64, int(flips), replace=False):
            mask |= 1 << int(bit)
        out[k] ^= np.uint64(mask)
    return out


def synthetic(n: int, n_planted: int, n_mirrored: int, max_distance: int, seed: int = 0):
    """(hashes, mirror hashes, planted pairs as a set of (i, j) with i < j)."""
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**64 - 1, size=n, dtype=np.uint64, endpoint=True)
    mirrors = rng.integers(0, 2**64 - 1, size=n, dtype=np.uint64, endpoint=True)
    order = rng.permutation(n)
    sources = order[: n_planted + n_mirrored]
    copies = order[n_planted + n_mirrored : 2 * (n_planted + n_mirrored)]
    flips = rng.integers(0, max_distance + 1, size=len(sources))
    direct_src, direct_dst = sources[:n_planted], copies[:n_planted]
    hashes[direct_dst] = _flip_random_bits(hashes[direct_src], flips[:n_planted], rng)
    mirror_src, mirror_dst = sources[n_planted:], copies[n_planted:]
    # the copy is a mirrored image: its mirror hash is close to the original's hash
    mirrors[mirror_dst] = _flip_random_bits(hashes[mirror_src], flips[n_planted:], rng)
    planted = {(int(min(a, b)), int(max(a, b))) for a, b in zip(sources, copies, strict=True)}
    return hashes, mirrors, planted


def bench_synthetic(n: int, n_planted: int, n_mirrored: int, max_distance: int, repeats: int):
    hashes, mirrors, planted = synthetic(n, n_planted, n_mirrored, max_distance)
    times, cluster_times = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        i, j, _, mirrored = pairs_within(hashes, max_distance, mirrors)
        searched = time.perf_counter()
        ids = connected_clusters(n, i, j)
        done = time.perf_counter()
        times.append(done - started)
        cluster_times.append(done - searched)
    found = set(zip(i.tolist(), j.tolist(), strict=True))
    same_cluster = sum(ids[a] == ids[b] for a, b in planted)
    return {
        "hashes": n,
        "planted_pairs": len(planted),
        "planted_mirrored_pairs": n_mirrored,
        "max_distance": max_distance,
        "chunks": choose_chunks(n, max_distance),
        "repeats": repeats,
        "wall_s_best": round(min(times), 3),
        "wall_s_median": round(statistics.median(times), 3),
        "clustering_s_best": round(min(cluster_times), 3),
        "candidate_pairs": len(found),
        "mirrored_candidate_pairs": int(mirrored.sum()),
        "recall_planted": round(len(planted & found) / len(planted), 6),
        "planted_in_same_cluster": round(same_cluster / len(planted), 6),
        "unplanted_pairs": len(found - planted),
        "goal": "under 10 s",
    }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(call):
    """(result, wall seconds, CPU seconds of all threads) of `call()`."""
    cpu_before = _cpu_seconds()
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started, _cpu_seconds() - cpu_before


def bench_dataset(dataset: Path) -> dict:
    from braintumor.data.ingest import ingest
    from braintumor.data.manifest import read_manifest
    from braintumor.integrity.audit import run_audit

    with tempfile.TemporaryDirectory() as work:
        raw = Path(work) / "raw"
        ingested, ingest_wall, ingest_cpu = _timed(lambda: ingest(dataset, out_dir=raw))
        result, wall, cpu = _timed(
            lambda: run_audit(raw, read_manifest(raw), out_dir=Path(work) / "audit")
        )
    figures = result.figures
    return {
        "dataset": str(dataset),
        "images": figures["images"]["total"],
        "quarantined": len(ingested.quarantine),
        # once per dataset version: decoding, hashing and copying every file
        "ingest_wall_s": round(ingest_wall, 2),
        "ingest_cpu_s": round(ingest_cpu, 2),
        # the audit on the ingested folder (what `braintumor data audit` runs)
        "audit_wall_s": round(wall, 2),
        # CPU seconds of all threads: on a busy machine wall time grows, CPU time much less
        "audit_cpu_s": round(cpu, 2),
        "audit_stages_s": figures["timings"],
        "candidate_pairs": figures["near"]["candidate_pairs"],
        "verified_pairs": figures["near"]["verified_pairs"],
        "clusters": figures["clusters"]["clusters"],
        "redundant_images": figures["clusters"]["redundant_images"],
        "label_conflict_clusters": figures["label_conflicts"]["clusters"],
        "testing_with_training_twin": figures["leakage"]["testing_with_training_twin"],
        "official_test_left": figures["protocols"]["official"]["official"]["test_left"],
        "goal": "audit under 60 s",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--planted", type=int, default=10_000)
    parser.add_argument("--mirrored", type=int, default=2_000)
    parser.add_argument("--max-distance", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dataset", type=Path, default=FULL_DATASET)
    parser.add_argument("--skip-dataset", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS / "dedup.json")
    args = parser.parse_args()

    head = header("dedup", __file__)
    report = {}
    report["synthetic"] = bench_synthetic(
        args.n, args.planted, args.mirrored, args.max_distance, args.repeats
    )
    print(json.dumps(report["synthetic"], indent=2))
    if not args.skip_dataset and (args.dataset / "Training").is_dir():
        report["dataset"] = bench_dataset(args.dataset)
        print(json.dumps(report["dataset"], indent=2))
    else:
        report["dataset"] = None
    report["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    head["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    write_results(head, report, args.out)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
