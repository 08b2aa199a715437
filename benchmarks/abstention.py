"""Abstention benchmark: what the guard of the Bento that `make run` built catches, and what
serving it costs.

    python benchmarks/abstention.py                    # the newest Bento; ~5 minutes on 2 cores
    python benchmarks/abstention.py --bento brain_tumor_classifier:TAG --skip-serving

What it does, in order:
1. The Bento: `--bento`, else the newest `brain_tumor_classifier` Bento in the BentoML store;
   the model version it pins (its folder in the model store: serving graph, card, guard) and
   that version's leakage-free split, read from the ZenML store (the split it trained on).
2. The model's answers, computed as the service computes them (`Predictor`, `Guard`, the
   input checks on the decoded files) on the split's train, validation and test images.
3. The OOD suite, made in code from material that needs no download: noise, constant and
   gradient images, scikit-learn's sample photographs (colour and grey) and crops of them,
   rendered text, and real validation slices destroyed (heavy occlusion, extreme blur). Per
   kind, AUROC against the resplit test images of: the guard (input checks first, then the
   OOD score), the served OOD score, both detector candidates (fitted here on the training
   embeddings with the pipeline's code), the energy score and the max-softmax baseline. The
   detector is chosen by its mean AUROC against the *validation* images (recorded as
   `choice`), never the test images.
4. Selective prediction with the served thresholds: coverage (answered without review) and
   accuracy of the answered on the test split, flags by reason; on the `official` protocol's
   purged Testing images (other sources) that the model never trained on, the share of its
   errors that are flagged.
5. Conformal coverage per class on the test split, against the card's target.
6. Serving cost (`bentoml serve` of that Bento on loopback): time to /readyz, single-image p50
   latency, throughput at 8 clients with failures counted, server RSS (all processes) after
   warm-up and over a repeated phase.
Figures go to benchmarks/results/abstention.json with command, commit, time and machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(ROOT / "benchmarks")]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["BENTOML_DO_NOT_TRACK"] = "true"

from _common import RESULTS, header, newest_bento, pinned_model, write_results  # noqa: E402

SIZE = 256  # side of the made OOD images (the service resizes every upload anyway)
PER_KIND = 40  # images per OOD kind


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- the Bento and its model -----------------------------------------------------------------


def model_splits(model_version: str):
    """The splits table of the ZenML model version (the split the model trained on)."""
    from zenml.client import Client

    from braintumor.constants import ARTIFACT_SPLITS, MODEL_NAME

    version = Client().get_model_version(MODEL_NAME, model_version)
    artifact = version.get_artifact(ARTIFACT_SPLITS)
    if artifact is None:
        raise SystemExit(f"model version {model_version} has no {ARTIFACT_SPLITS!r} artifact")
    return artifact.load()


# --- answers as the service gives them -------------------------------------------------------


def decoded_files(paths: list[Path]) -> list:
    from braintumor.imaging import decode_image

    return [decode_image(Path(p).read_bytes(), measure_colour=True) for p in paths]


def answers(predictor, guard, grays: list[np.ndarray], colours: list, threshold: float) -> dict:
    """The service's answers (probabilities, scores, reasons) for decoded grey images."""
    from braintumor.guard.input_checks import failed_checks
    from braintumor.guard.ood import energy
    from braintumor.guard.review import REASONS
    from braintumor.preprocessing import preprocess
    from braintumor.serving.predictor import ModelOutputs

    failed = [failed_checks(g, c) for g, c in zip(grays, colours, strict=True)]
    tensors = np.stack([preprocess(g, predictor.card.spec) for g in grays])
    parts = [predictor.infer(tensors[i : i + 64]) for i in range(0, len(tensors), 64)]
    probs = np.concatenate([p.probabilities for p in parts])
    logits = np.concatenate([p.logits for p in parts])
    embedding = np.concatenate([p.embedding for p in parts])
    assessed = guard.assess(
        ModelOutputs(probs, logits, embedding), failed, predictor.class_names, threshold
    )
    reasons = {r: np.array([r in a.reasons for a in assessed]) for r in REASONS}
    return {
        "probs": probs,
        "embedding": embedding,
        "energy": energy(logits),
        "ood": np.array([a.ood_score for a in assessed], dtype=float),
        "input_failed": np.array([bool(f) for f in failed]),
        "set_size": np.array([len(a.prediction_set) for a in assessed]),
        "in_set": np.array(
            [[name in a.prediction_set for name in predictor.class_names] for a in assessed]
        ),
        "reasons": reasons,
        "flagged": np.array([bool(a.reasons) for a in assessed]),
    }


# --- the OOD suite ---------------------------------------------------------------------------


def ood_suite(slices: list[np.ndarray], seed: int = 0) -> dict[str, list[tuple[np.ndarray, float]]]:
    """Kind -> [(grey image, colourfulness or None)], PER_KIND each, made in code."""
    import cv2
    from sklearn.datasets import load_sample_image

    from braintumor.guard.input_checks import colourfulness

    rng = np.random.default_rng(seed)
    suite: dict[str, list] = {}
    suite["noise_uniform"] = [
        (rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8), None) for _ in range(PER_KIND)
    ]
    suite["noise_gaussian_smoothed"] = [
        (
            np.clip(
                cv2.GaussianBlur(rng.normal(128, 60, (SIZE, SIZE)), (0, 0), rng.uniform(1, 4)),
                0,
                255,
            ).astype(np.uint8),
            None,
        )
        for _ in range(PER_KIND)
    ]
    suite["constant"] = [
        (np.full((SIZE, SIZE), int(level), np.uint8), None)
        for level in np.linspace(0, 255, PER_KIND)
    ]
    yy, xx = np.mgrid[:SIZE, :SIZE] / (SIZE - 1)
    gradients = []
    for i in range(PER_KIND):
        angle = rng.uniform(0, 2 * np.pi)
        if i % 2:
            values = np.cos(angle) * xx + np.sin(angle) * yy
        else:
            centre = rng.uniform(0.2, 0.8, 2)
            values = -np.hypot(xx - centre[0], yy - centre[1])
        values = (values - values.min()) / (np.ptp(values) or 1)
        gradients.append(((values * 255).astype(np.uint8), None))
    suite["gradient"] = gradients
    photos = [load_sample_image(name) for name in ("china.jpg", "flower.jpg")]
    colour, grey, crops = [], [], []
    for i in range(PER_KIND):
        photo = photos[i % 2]
        h, w = photo.shape[:2]
        side = int(rng.uniform(0.3, 1.0) * min(h, w))
        top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        crop = photo[top : top + side, left : left + side]
        gray_crop = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
        crops.append((gray_crop, colourfulness(crop)))
        if i < 2:  # the whole photographs, once each
            colour.append((cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY), colourfulness(photo)))
            grey.append((cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY), None))
        else:  # and grey crops, as a grey photograph would arrive
            grey.append((gray_crop, None))
    suite["photo_colour"] = colour + crops[: PER_KIND - 2]
    suite["photo_grey"] = grey
    texts = []
    words = ["MRI REPORT", "Patient 0042", "lorem ipsum", "T2 FLAIR", "brain", "0123456789"]
    for i in range(PER_KIND):
        background = 0 if i % 2 else 255
        image = np.full((SIZE, SIZE), background, np.uint8)
        for line in range(int(rng.integers(2, 7))):
            cv2.putText(
                image,
                words[(i + line) % len(words)],
                (int(rng.integers(0, 60)), 40 + 35 * line),
                cv2.FONT_HERSHEY_SIMPLEX,
                float(rng.uniform(0.6, 1.4)),
                255 - background,
                2,
            )
        texts.append((image, None))
    suite["text"] = texts
    occluded, blurred = [], []
    for i in range(PER_KIND):
        base = slices[i % len(slices)]
        image = base.copy()
        h, w = image.shape
        for _ in range(int(rng.integers(3, 6))):  # big blocks covering most of the slice
            bh, bw = int(rng.uniform(0.3, 0.6) * h), int(rng.uniform(0.3, 0.6) * w)
            top, left = rng.integers(0, h - bh + 1), rng.integers(0, w - bw + 1)
            image[top : top + bh, left : left + bw] = rng.choice([0, 255])
        occluded.append((image, None))
        sigma = rng.uniform(12, 25) * max(h, w) / 256
        blurred.append((cv2.GaussianBlur(base, (0, 0), sigma), None))
    suite["slice_occluded"] = occluded
    suite["slice_blurred"] = blurred
    return suite


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.zeros(len(inside)), np.ones(len(outside))]
    return round(float(roc_auc_score(y, np.r_[inside, outside])), 4)


def scores_of(result: dict, detectors: dict) -> dict[str, np.ndarray]:
    """Every candidate score of a batch of answers: higher = less familiar."""
    guard = np.where(result["input_failed"], np.inf, result["ood"])  # checks come first
    out = {
        "guard": np.nan_to_num(guard, posinf=1e12),
        "served_ood_score": result["ood"],
        "energy": result["energy"],
        "max_softmax": -result["probs"].max(axis=1),
    }
    for name, detector in detectors.items():
        out[f"detector_{name}"] = detector.score(result["embedding"])
    return out


# --- serving cost ----------------------------------------------------------------------------


def serving_cost(bento_tag: str, sample: list[Path], duration: float, workers: int) -> dict:
    """The Bento served on loopback with `workers` worker processes: ready time, latency,
    throughput, memory."""
    import httpx
    import serving as http  # benchmarks/serving.py: the load client and memory sampler

    from braintumor.serving.local import free_port, serving

    port = free_port()
    (ROOT / "benchmarks" / ".work").mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRAINTUMOR_")}
    env["BRAINTUMOR_WORKERS"] = str(workers)
    requests = [
        http.multipart_request("/predict", f"127.0.0.1:{port}", "image", p.name, p.read_bytes())
        for p in sample
    ]
    started = time.perf_counter()
    with serving(
        bento_tag, port=port, env=env, log=ROOT / "benchmarks" / ".work" / "abstention-serve.log"
    ) as server:
        ready = time.perf_counter() - started
        metadata = httpx.get(f"{server.url}/metadata").json()
        with http.MemorySampler(server.process.pid) as memory:
            image = sample[0]
            explained = httpx.post(
                f"{server.url}/explain", files={"image": (image.name, image.read_bytes())}
            )
            explained.raise_for_status()
            asyncio.run(http._load("127.0.0.1", port, requests, 4, 5.0, 2000))  # warm-up
            http.wait_for_stable(memory)
            rss_after_warmup = memory.rss_mb()
            single = asyncio.run(http._load("127.0.0.1", port, requests, 1, duration, 2000))
            eight = asyncio.run(http._load("127.0.0.1", port, requests, 8, duration, 20_000))
            rss_before_repeat = memory.rss_mb()
            repeat = asyncio.run(http._load("127.0.0.1", port, requests, 8, duration, 20_000))
            rss_end = memory.rss_mb()
        samples = [rss for _, rss in memory.samples]
    return {
        "bento": bento_tag,
        "served_runtime": metadata["serving"]["backend"],
        "workers": workers,
        "serve_to_readyz_seconds": round(ready, 2),
        "single_client": single,
        "eight_clients": eight,
        "repeat_eight_clients": repeat,
        "memory": {
            "rss_mb_after_warmup": round(rss_after_warmup, 1),
            "rss_mb_before_repeat": round(rss_before_repeat, 1),
            "rss_mb_end": round(rss_end, 1),
            "rss_mb_max": round(max(samples), 1),
            "growth_mb_during_repeat_phase": round(rss_end - rss_before_repeat, 1),
        },
        "explain_status": explained.status_code,
        "tensorflow_in_bento_requirements": _bento_has_tensorflow(bento_tag),
    }


def _bento_has_tensorflow(bento_tag: str) -> bool:
    import bentoml

    requirements = Path(bentoml.get(bento_tag).path) / "env" / "python" / "requirements.txt"
    text = requirements.read_text().lower() if requirements.is_file() else ""
    return "tensorflow" in text or "keras" in text


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bento", help="Bento tag (default: the newest in the store)")
    parser.add_argument("--data-root", type=Path, default=ROOT / "data" / "raw")
    parser.add_argument(
        "--splits", type=Path, help="a splits CSV instead of the model version's (tests)"
    )
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per load phase")
    parser.add_argument("--skip-serving", action="store_true")
    parser.add_argument(
        "--workers", default="1,2", help="server worker counts to measure (comma-separated)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "abstention.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    head = header("abstention", __file__, argv)
    from braintumor.constants import TEST, TRAIN, VAL
    from braintumor.guard.ood import DETECTORS, fit_detector
    from braintumor.guard.review import REASONS
    from braintumor.serving.guard import Guard
    from braintumor.serving.predictor import Predictor
    from braintumor.training.dataset import label_indices, select_split

    bento_tag = args.bento or newest_bento()
    model_tag, model_dir = pinned_model(bento_tag)
    predictor = Predictor(model_dir)
    card = predictor.card
    if card.guard is None:
        raise SystemExit(f"{model_tag} has no guard: package it with this version's pipeline")
    guard = Guard.load(model_dir, card.guard)
    threshold = card.guard.review_threshold
    log(f"{bento_tag}: model {model_tag} (version {card.model_version}, {predictor.backend})")
    if args.splits:
        import pandas as pd

        splits = pd.read_csv(args.splits)
    else:
        splits = model_splits(card.model_version)

    rows, results, labels = {}, {}, {}
    for split in (TRAIN, VAL, TEST):
        rows[split] = select_split(splits, split)
        decoded = decoded_files([args.data_root / p for p in rows[split]["path"]])
        results[split] = answers(
            predictor, guard, [d.pixels for d in decoded], [d.colourfulness for d in decoded],
            threshold,
        )  # fmt: skip
        labels[split] = label_indices(rows[split]["label"].tolist(), card.class_names)
        log(f"{split}: {len(rows[split])} images")

    detectors = {
        kind: fit_detector(
            kind, results[TRAIN]["embedding"], labels[TRAIN], k=card.guard.knn_k or 10
        )
        for kind in DETECTORS
    }
    val_slices = decoded_files([args.data_root / p for p in rows[VAL]["path"][:PER_KIND]])
    suite = ood_suite([d.pixels for d in val_slices])
    inside = {s: scores_of(results[s], detectors) for s in (VAL, TEST)}
    per_kind, flagged_share, choice_auroc = {}, {}, {name: [] for name in inside[VAL]}
    for kind, items in suite.items():
        result = answers(predictor, guard, [g for g, _ in items], [c for _, c in items], threshold)
        outside = scores_of(result, detectors)
        per_kind[kind] = {name: auroc(inside[TEST][name], outside[name]) for name in outside}
        for name in outside:
            choice_auroc[name].append(auroc(inside[VAL][name], outside[name]))
        flagged_share[kind] = {
            "images": len(items),
            "flagged": round(float(result["flagged"].mean()), 4),
            **{r: round(float(result["reasons"][r].mean()), 4) for r in REASONS},
        }
        log(
            f"{kind}: guard AUROC {per_kind[kind]['guard']}, "
            f"flagged {flagged_share[kind]['flagged']}"
        )

    test, y = results[TEST], labels[TEST]
    correct = test["probs"].argmax(axis=1) == y
    answered = ~test["flagged"]
    coverage = {
        name: round(float(test["in_set"][y == c, c].mean()), 4)
        for c, name in enumerate(card.class_names)
        if (y == c).any()
    }
    # Official protocol: Testing images with no copy in Training, restricted to the ones in
    # this model's own test split (the rest it may have trained on).
    training_clusters = set(splits.loc[splits["origin_split"] == "training", "cluster_id"])
    official = (rows[TEST]["origin_split"] == "testing") & ~rows[TEST]["cluster_id"].isin(
        training_clusters
    )
    official = official.to_numpy()
    errors = official & ~correct
    targets = {
        "ood_auroc_min_noise_constant_photographs": 0.99,
        "ood_auroc_min_other_kinds": 0.95,
        "coverage_min": 0.85,
        "answered_accuracy_min": 0.97,
        "official_errors_flagged_min": 0.80,
        "conformal_coverage_tolerance": 0.03,
        "p50_ms_max": 15,
        "throughput_8_clients_min_rps": 300,
        "rss_mb_max": 400,
        "readyz_seconds_max": 5,
    }
    figures = {
        "bento": bento_tag,
        "model": {
            "tag": model_tag,
            "version": card.model_version,
            "backbone": card.backbone,
            "served_runtime": predictor.backend,
            "protocol": card.protocol,
            "temperature": card.temperature,
        },
        "guard": card.guard.model_dump(mode="json"),
        "targets": targets,
        "ood_suite": {
            "in_distribution": f"resplit test split of the model ({len(y)} images)",
            "auroc": per_kind,
            "flag_rates": flagged_share,
        },
        "choice": {
            "guided_by": "mean AUROC of each candidate score over the OOD kinds against the "
            "validation images (never the test images)",
            "mean_auroc_against_validation": {
                name: round(float(np.mean(values)), 4) for name, values in choice_auroc.items()
            },
            "served_detector": card.guard.detector,
        },
        "selective_prediction": {
            "test_images": len(y),
            "accuracy_all": round(float(correct.mean()), 4),
            "coverage": round(float(answered.mean()), 4),
            "answered_accuracy": round(float(correct[answered].mean()), 4)
            if answered.any()
            else None,
            "flag_rates": {r: round(float(test["reasons"][r].mean()), 4) for r in REASONS},
            "errors": int((~correct).sum()),
            "errors_flagged": round(float(test["flagged"][~correct].mean()), 4)
            if (~correct).any()
            else None,
            "official_purged_testing_in_test_split": {
                "images": int(official.sum()),
                "errors": int(errors.sum()),
                "errors_flagged": round(float(test["flagged"][errors].mean()), 4)
                if errors.any()
                else None,
            },
        },
        "conformal": {
            "target_coverage": round(1 - card.guard.conformal_error_rate, 4),
            "test_coverage_per_class": coverage,
            "mean_set_size": round(float(test["set_size"].mean()), 3),
            "singleton_share": round(float((test["set_size"] == 1).mean()), 4),
        },
    }
    if not args.skip_serving:
        sample = sorted(
            p for p in (ROOT / "tests/data/sample").glob("*/*/*.jpg") if "planted" not in p.name
        )
        figures["serving"] = {}
        for workers in (int(w) for w in args.workers.split(",")):
            cost = serving_cost(bento_tag, sample, args.duration, workers)
            figures["serving"][f"workers_{workers}"] = cost
            log(
                f"serving, {workers} worker(s): {cost['eight_clients']['throughput_rps']} req/s "
                f"at 8 clients, RSS {cost['memory']['rss_mb_after_warmup']} MB"
            )
    write_results(head, figures, args.out)
    log(f"wrote {args.out}")
    return figures


if __name__ == "__main__":
    main()
