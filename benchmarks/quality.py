"""Quality benchmark: train the `cpu` profile on the real dataset and score it honestly.

For each protocol it trains on the kept `train` rows of a leakage-free splits table (from the
integrity step), keeps the epoch with the best `val` loss, and scores `test`:
- `resplit`: a grouped, stratified re-split of all images (no duplicate cluster straddles).
- `official`: the dataset's Testing split purged of every image with a Training twin; what is
  left comes mostly from other sources, so its per-class recall measures generalisation.

Writes `benchmarks/results/quality.json`: per protocol the weighted F1 with its bootstrap 95%
CI, macro F1, accuracy, balanced accuracy, per-class recall, confusion matrix, tumour vs no
tumour sensitivity and specificity (`tumour_vs_none`: for a four-class model its binary view,
tumour probability 1 - P(notumor) > 0.5), training seconds, epochs, the config, the git commit
and the machine.

    python benchmarks/quality.py --data-root data/raw \\
        --splits-resplit data/audit_resplit/splits.csv \\
        --splits-official data/audit_official/splits.csv

The config is the training block of configs/cpu.yaml; `--config other.yaml` and
`--set key.sub=<json>` override it. The binary model (`--config configs/binary.yaml`, tumour
vs no tumour) next to the four-class model's binary view on the same test images:

    python benchmarks/quality.py --config configs/binary.yaml \\
        --out benchmarks/results/quality_binary.json \\
        --compare-with benchmarks/results/quality.json --splits-resplit ... --splits-official ...

`--compare-with` reads that report's saved test probabilities (`<report>_<protocol>_test_
probs.npy`, made on the same splits file) and records their binary view as
`four_class_binary_view` next to this model's figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "benchmarks")]

from _common import header, write_results  # noqa: E402

from braintumor.constants import (  # noqa: E402
    BINARY_CLASS_NAMES,
    CLASS_NAMES,
    NO_TUMOUR,
    PROTOCOL_LEAVE_SOURCE_OUT,
    PROTOCOLS,
    TASK_FOUR_CLASS,
)
from braintumor.evaluation.metrics import evaluate, evaluate_by_group, tumour_vs_none  # noqa: E402
from braintumor.models.calibrated import calibrate_model  # noqa: E402
from braintumor.models.inference import predict_proba  # noqa: E402
from braintumor.tasks import binary_probs  # noqa: E402
from braintumor.training.config import TrainingConfig  # noqa: E402
from braintumor.training.dataset import label_indices, load_split_arrays  # noqa: E402
from braintumor.training.trainer import (  # noqa: E402
    EpochReport,
    appearance_groups,
    train_model,
)

DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "brain-tumor-classification-mri"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "quality.json"

# The `cpu` profile is the training block of configs/cpu.yaml (one source of truth with the
# pipeline's run config); --config and --set override it.
CPU_PROFILE_FILE = REPO / "configs" / "cpu.yaml"


def training_block(path: Path) -> dict[str, Any]:
    """The `training` mapping of a run config (parameters.run.training) or a bare mapping."""
    import yaml

    values = yaml.safe_load(path.read_text()) or {}
    run = values.get("parameters", {}).get("run", {}) if "parameters" in values else values
    return dict(run.get("training", run))


log = logging.getLogger("quality")


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def split_summary(splits: pd.DataFrame) -> dict[str, dict[str, int]]:
    kept = splits[splits["status"] == "kept"]
    table = kept.groupby(["split", "label"]).size().unstack(fill_value=0)
    return {split: {k: int(v) for k, v in row.items()} for split, row in table.iterrows()}


def run_protocol(
    protocol: str,
    splits_path: Path,
    data_root: Path,
    config: TrainingConfig,
    out: Path,
    model_dir: Path | None = None,
    trained_model: Path | None = None,
    four_class_probs: Path | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """Train on the protocol's `train` rows and score `val` and `test`; with `trained_model`
    (a saved .keras file), score that model instead of training one. `four_class_probs`: a
    four-class model's saved test probabilities on the same splits, whose binary view is
    recorded next to this model's figures. `name` (default: the protocol) names the test
    probabilities file."""
    name = name or protocol
    splits = pd.read_csv(splits_path, dtype={"path": str, "label": str, "split": str})
    start = time.perf_counter()
    names = config.class_names
    data = load_split_arrays(splits, data_root, config.preprocessing, class_names=names)
    load_seconds = time.perf_counter() - start
    log.info(
        "%s: %d train / %d val / %d test images loaded in %.0fs",
        protocol,
        len(data.train),
        len(data.val),
        len(data.test),
        load_seconds,
    )

    def progress(report: EpochReport) -> None:
        m = report.metrics
        log.info(
            "%s [%s] epoch %d/%d %.0fs loss %.3f val_loss %.3f val_acc %.3f lr %.1e",
            protocol,
            report.phase,
            report.epoch,
            report.max_epochs,
            report.seconds,
            m.get("loss", float("nan")),
            m.get("val_loss", float("nan")),
            m.get("val_accuracy", float("nan")),
            m.get("learning_rate", float("nan")),
        )

    if trained_model is not None:
        from braintumor.models.saving import load_keras_model

        model, result = load_keras_model(trained_model), None
    else:
        result = train_model(config, data, progress=progress)
        model, shift = result.model, None
        if config.refit_class_bias:  # the offsets go into the model; T is not applied here
            shift = calibrate_model(model, data.val.x, data.val.y, class_offsets=True).logit_shift
    validation = validation_figures(data.val.x, data.val.y, predict_proba(model, data.val.x), names)
    probs = predict_proba(model, data.test.x)
    metrics = evaluate(data.test.y, probs, names, n_boot=2000, seed=config.seed)
    tested = splits[(splits["status"] == "kept") & (splits["split"] == "test")]
    source_of = tested.drop_duplicates("path").set_index("path").get("source")
    figures = {
        "protocol": protocol,
        "task": config.task,
        "class_names": list(names),
        "weighted_f1": metrics["weighted_f1"],
        "weighted_f1_ci95": metrics["weighted_f1_ci"],
        "macro_f1": metrics["macro_f1"],
        "accuracy": metrics["accuracy"],
        "balanced_accuracy": metrics["balanced_accuracy"],
        "per_class_recall": {n: m["recall"] for n, m in metrics["per_class"].items()},
        "per_class": metrics["per_class"],
        "confusion_matrix": metrics["confusion_matrix"],
        "tumour_vs_none": metrics["tumour_vs_none"],
        "roc_auc_macro": metrics["roc_auc_macro"],
        "ece": metrics["ece"],
        "test_images": metrics["n"],
        "validation": validation,
        "splits_file": str(splits_path),
        "splits_sha256": file_digest(splits_path),
        "kept_images": split_summary(splits),
    }
    if source_of is not None:  # per source, next to the pooled figures
        sources = source_of.reindex(data.test.paths).astype(str).to_numpy()
        figures["test_sources"] = sorted(set(sources))
        figures["by_source"] = evaluate_by_group(data.test.y, probs, names, sources)
    if four_class_probs is not None:
        figures["four_class_binary_view"] = four_class_binary_view(
            four_class_probs, data.test.y, names
        )
    if result is None:
        return {
            **figures,
            "scored_model": str(trained_model),
            "model_sha256": file_digest(trained_model),
        }
    # Next to the report, named after it: quality.json -> quality_<protocol>_test_probs.npy
    np.save(out.with_name(f"{out.stem}_{name}_test_probs.npy"), probs)
    if model_dir is not None:  # --save-models
        model_dir.mkdir(parents=True, exist_ok=True)
        result.model.save(model_dir / f"quality_{name}.keras")
    return {
        **figures,
        "training_seconds": round(result.seconds, 1),
        "load_seconds": round(load_seconds, 1),
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "best_val_loss": result.best_val_loss,
        "class_logit_shift": None if shift is None else [float(v) for v in shift],
        "history": {k: v for k, v in result.history.items() if k != "seconds"},
    }


def four_class_binary_view(
    probs_path: Path, y: np.ndarray, class_names: tuple[str, ...]
) -> dict[str, Any]:
    """The binary view (tumour vs no tumour) of a four-class model's saved test probabilities,
    scored on this run's test labels `y` (indices among `class_names`, same images, same
    order)."""
    probs = np.load(probs_path)
    if probs.shape != (len(y), len(CLASS_NAMES)):
        raise ValueError(
            f"{probs_path} holds {probs.shape} probabilities, not {len(y)} test images x "
            f"{len(CLASS_NAMES)} classes: was it made on another splits file?"
        )
    binary_y = label_indices(np.asarray(class_names)[y].tolist(), BINARY_CLASS_NAMES)
    view = tumour_vs_none(binary_y, binary_probs(probs, CLASS_NAMES), BINARY_CLASS_NAMES)
    return {**view, "test_probs": str(probs_path)}


def comparison_probs(report_path: Path, protocol: str, splits_path: Path) -> Path:
    """The saved test probabilities of a four-class quality report for `protocol`, checked to
    come from the same splits file (so the same test images, in the same order)."""
    report = json.loads(report_path.read_text())
    if report.get("config", {}).get("task", TASK_FOUR_CLASS) != TASK_FOUR_CLASS:
        raise ValueError(f"{report_path} is not a four-class model's report")
    figures = report.get("protocols", {}).get(protocol)
    if figures is None:
        raise ValueError(f"{report_path} has no {protocol} figures")
    if figures.get("splits_sha256") != file_digest(splits_path):
        raise ValueError(
            f"{report_path}'s {protocol} figures were made on another splits file than "
            f"{splits_path}: the test images would differ"
        )
    probs = report_path.with_name(f"{report_path.stem}_{protocol}_test_probs.npy")
    if not probs.is_file():
        raise ValueError(f"{probs} is missing: the four-class test probabilities are needed")
    return probs


def validation_figures(
    x: np.ndarray, y: np.ndarray, probs: np.ndarray, class_names: tuple[str, ...] = CLASS_NAMES
) -> dict[str, Any]:
    """What a recipe may be chosen on: the validation split's figures, overall and per
    appearance group (the audit's sequence-type proxy). `tumour_sensitivity` per group shows
    the sequence shortcut: tumours that look like the "no tumour" images' sequence."""
    metrics = evaluate(y, probs, class_names, n_boot=200)
    groups = appearance_groups(x)
    notumor = class_names.index(NO_TUMOUR)
    predicted = probs.argmax(axis=1)
    per_group = {}
    for group in sorted(set(groups)):
        rows = groups == group
        tumour = rows & (y != notumor)
        clean = rows & (y == notumor)
        per_group[str(group)] = {
            "images": int(rows.sum()),
            "accuracy": float((predicted[rows] == y[rows]).mean()),
            "tumour_images": int(tumour.sum()),
            "tumour_sensitivity": (
                float((predicted[tumour] != notumor).mean()) if tumour.any() else None
            ),
            "notumor_images": int(clean.sum()),
            "notumor_specificity": (
                float((predicted[clean] == notumor).mean()) if clean.any() else None
            ),
        }
    return {
        "weighted_f1": metrics["weighted_f1"],
        "macro_f1": metrics["macro_f1"],
        "per_class_recall": {n: m["recall"] for n, m in metrics["per_class"].items()},
        "tumour_vs_none": metrics["tumour_vs_none"],
        "ece": metrics["ece"],
        "images": metrics["n"],
        "per_appearance_group": per_group,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--splits-resplit", type=Path, help="splits.csv of the resplit protocol")
    parser.add_argument("--splits-official", type=Path, help="splits.csv of the official protocol")
    parser.add_argument(
        "--splits-leave-source-out",
        type=Path,
        help="splits.csv of the leave-source-out protocol (braintumor data audit --holdout NAME)",
    )
    parser.add_argument(
        "--config", type=Path, help="run config (or bare training mapping) over configs/cpu.yaml"
    )
    parser.add_argument("--set", action="append", default=[], help="dotted override, key=json")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--save-models", type=Path, help="folder for the trained .keras models")
    parser.add_argument(
        "--score-model",
        type=Path,
        help="score this saved .keras model (trained on the given splits) instead of training",
    )
    parser.add_argument(
        "--compare-with",
        type=Path,
        help="a four-class quality report made on the same splits: record its model's binary "
        "view (tumour vs no tumour) next to this model's figures",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    values = training_block(CPU_PROFILE_FILE)
    if args.config:
        values = deep_merge(values, training_block(args.config))
    for item in args.set:
        key, _, raw = item.partition("=")
        values = deep_merge(values, dotted(key, json.loads(raw)))
    config = TrainingConfig.model_validate(values)
    chosen = {
        "resplit": args.splits_resplit,
        "official": args.splits_official,
        PROTOCOL_LEAVE_SOURCE_OUT: args.splits_leave_source_out,
    }
    if not any(chosen.values()):
        parser.error(
            "give --splits-resplit, --splits-official and/or --splits-leave-source-out "
            "(leakage-free splits.csv)"
        )
    compared: dict[str, Path] = {}
    if args.compare_with:
        try:  # before an hour of training, not after
            for protocol, path in chosen.items():
                if path is not None:
                    compared[protocol] = comparison_probs(args.compare_with, protocol, path)
        except (OSError, ValueError) as exc:
            parser.error(f"--compare-with: {exc}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        **header("quality", __file__, argv),
        "profile": str(args.config or CPU_PROFILE_FILE.relative_to(REPO)),
        "task": config.task,
        "config": config.model_dump(mode="json"),
        "data_root": str(args.data_root),
        "protocols": {},
    }
    if args.out.is_file():  # keep the other protocol's figures when running one
        report["protocols"] = kept_protocols(json.loads(args.out.read_text()), report["config"])
    for protocol in (*PROTOCOLS, PROTOCOL_LEAVE_SOURCE_OUT):
        path = chosen[protocol]
        if path is None:
            continue
        started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        report["protocols"][protocol] = run_protocol(
            protocol,
            path,
            args.data_root,
            config,
            args.out,
            args.save_models,
            args.score_model,
            compared.get(protocol),
        )
        # Per protocol too: a file can hold one protocol kept from an earlier run.
        report["protocols"][protocol]["git_commit"] = report["git_commit"]
        report["protocols"][protocol]["started"] = started
        report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        report["protocols"][protocol]["machine"] = dict(report["machine"])
        write_results(report, {}, args.out)
        summary = report["protocols"][protocol]
        log.info(
            "%s: weighted F1 %.4f [%.4f, %.4f], recall %s, %.0fs",
            protocol,
            summary["weighted_f1"],
            *summary["weighted_f1_ci95"],
            {k: round(v, 3) for k, v in summary["per_class_recall"].items()},
            summary.get("training_seconds", 0.0),
        )
        log.info("%s: tumour vs no tumour %s", protocol, summary["tumour_vs_none"])
        if "four_class_binary_view" in summary:
            log.info(
                "%s: the four-class model's binary view %s",
                protocol,
                {k: summary["four_class_binary_view"][k] for k in ("sensitivity", "specificity")},
            )
    log.info("figures written to %s", args.out)
    return 0


def kept_protocols(previous: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The protocols of an earlier report worth keeping: all of them if it used the same
    config, each stamped with the commit, start and machine of the run that made it; none
    otherwise (figures of another config must not sit under this one)."""
    if previous.get("config") != config:
        log.warning("the earlier figures were made with another config: not kept")
        return {}
    kept = {}
    for protocol, figures in previous.get("protocols", {}).items():
        kept[protocol] = {
            **figures,
            "git_commit": figures.get("git_commit", previous.get("git_commit")),
            "started": figures.get("started", previous.get("started")),
            "machine": figures.get("machine", previous.get("machine")),
        }
    return kept


def dotted(key: str, value: Any) -> dict[str, Any]:
    out: Any = value
    for part in reversed(key.split(".")):
        out = {part: out}
    return out


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


if __name__ == "__main__":
    raise SystemExit(main())
