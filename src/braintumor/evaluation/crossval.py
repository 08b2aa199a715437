"""Grouped k-fold cross-validation, next to the ungrouped k-fold the research reported.

- `assign_folds(splits, n_folds, seed)`: the fold of each row of a splits table under two
  schemes. `grouped_fold`: scikit-learn's `StratifiedGroupKFold` over the kept rows, grouped
  by the audit's duplicate clusters, so no cluster is in two folds. `ungrouped_fold`:
  `StratifiedKFold` over every image but the quarantined ones, redundant copies included, as
  the research did: a copy of a held-out image can then be in training. -1: not in the scheme.
- `fold_splits(folds, scheme, fold, val_fraction, seed)`: one fold as a splits table. The
  fold's images are `test`; an inner validation part (early stopping, best epoch, class
  offsets) is drawn from the other folds by the same scheme and is `val`; the rest `train`.
- `cross_validate_fold(...)`: train on one fold's train rows and score its held-out rows.
- `summarize_folds(results)`: per scheme, the mean and the standard deviation across folds
  (ddof=1) of weighted F1, macro F1 and every class's recall, and the gap ungrouped - grouped:
  how much the leakage of duplicates across folds inflates the figures.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from braintumor.constants import CLASS_NAMES, TEST, TRAIN, VAL

GROUPED, UNGROUPED = "grouped", "ungrouped"
SCHEMES = (GROUPED, UNGROUPED)
FOLD_COLUMN = {GROUPED: "grouped_fold", UNGROUPED: "ungrouped_fold"}
KEPT, REDUNDANT = "kept", "redundant"


class CrossValidationError(ValueError):
    """Folds that cannot be made as asked; the message says what to change."""


def assign_folds(splits: pd.DataFrame, n_folds: int, seed: int = 42) -> pd.DataFrame:
    """The splits table's usable rows with their `grouped_fold` and `ungrouped_fold`.

    Args:
        splits: a splits table (`integrity.splits.make_splits`): path, label, cluster_id,
            status (kept, redundant or quarantined).
        n_folds: folds per scheme, at least 2, at most the number of clusters of the
            smallest class.
        seed: shuffles both schemes.
    """
    if not isinstance(n_folds, int | np.integer) or n_folds < 2:
        raise CrossValidationError(f"--folds must be a whole number of at least 2, not {n_folds}")
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    rows = splits[splits["status"].isin([KEPT, REDUNDANT])]
    rows = rows.sort_values("path").reset_index(drop=True)
    kept = rows["status"] == KEPT
    clusters = rows[kept].groupby("label")["cluster_id"].nunique()
    if clusters.empty or clusters.min() < n_folds:
        smallest = "no class" if clusters.empty else f"{clusters.idxmin()} has {clusters.min()}"
        raise CrossValidationError(
            f"--folds {n_folds} needs at least {n_folds} duplicate clusters in every class "
            f"({smallest}): use fewer folds"
        )
    rows["grouped_fold"] = -1
    grouped = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    kept_rows = rows[kept]
    for fold, (_, held) in enumerate(
        grouped.split(kept_rows, kept_rows["label"], groups=kept_rows["cluster_id"])
    ):
        rows.loc[kept_rows.index[held], "grouped_fold"] = fold
    rows["ungrouped_fold"] = -1
    ungrouped = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for fold, (_, held) in enumerate(ungrouped.split(rows, rows["label"])):
        rows.loc[rows.index[held], "ungrouped_fold"] = fold
    columns = [c for c in ("path", "label", "source", "cluster_id", "status") if c in rows]
    return rows[[*columns, "grouped_fold", "ungrouped_fold"]]


def fold_splits(
    folds: pd.DataFrame, scheme: str, fold: int, val_fraction: float = 0.15, seed: int = 42
) -> pd.DataFrame:
    """One fold of `scheme` as a splits table: path, label, cluster_id, split, status (kept).

    The inner validation part is drawn from the other folds with the scheme's own splitter
    (grouped by cluster or not), about `val_fraction` of them.
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    if scheme not in SCHEMES:
        raise CrossValidationError(f"unknown scheme {scheme!r}; choose one of {SCHEMES}")
    column = FOLD_COLUMN[scheme]
    rows = folds[folds[column] >= 0].reset_index(drop=True)
    if fold not in set(rows[column]):
        raise CrossValidationError(f"no fold {fold} in scheme {scheme}")
    rows["split"] = np.where(rows[column] == fold, TEST, TRAIN)
    rest = rows[rows["split"] == TRAIN]
    smallest = int(rest["label"].value_counts().min())
    n_inner = max(2, min(round(1 / val_fraction) if val_fraction > 0 else 2, smallest))
    if scheme == GROUPED:
        inner = StratifiedGroupKFold(n_splits=n_inner, shuffle=True, random_state=seed + fold)
        _, held = next(inner.split(rest, rest["label"], groups=rest["cluster_id"]))
    else:
        inner = StratifiedKFold(n_splits=n_inner, shuffle=True, random_state=seed + fold)
        _, held = next(inner.split(rest, rest["label"]))
    rows.loc[rest.index[held], "split"] = VAL
    rows["status"] = KEPT  # every row of the fold table is used (copies too, ungrouped)
    columns = [c for c in ("path", "label", "source", "cluster_id", "split", "status") if c in rows]
    return rows[columns]


def score_fold(
    y_true: np.ndarray, probs: np.ndarray, class_names: Sequence[str] = CLASS_NAMES
) -> dict[str, Any]:
    """Weighted F1, macro F1 and per-class recall of one fold's held-out images."""
    from braintumor.evaluation.metrics import check_inputs, confusion_matrix, macro_f1, weighted_f1

    k = len(class_names)
    y, p = check_inputs(y_true, probs, k)
    predicted = p.argmax(axis=1)
    cm = confusion_matrix(y, predicted, k)
    support = cm.sum(axis=1)
    recall = np.divide(np.diag(cm), support, out=np.zeros(k), where=support > 0)
    return {
        "n": len(y),
        "weighted_f1": weighted_f1(y, predicted, k),
        "macro_f1": macro_f1(y, predicted, k),
        "recall": {name: float(recall[i]) for i, name in enumerate(class_names)},
    }


def cross_validate_fold(
    folds: pd.DataFrame,
    scheme: str,
    fold: int,
    config: Any,
    data_root: str | Path,
    *,
    val_fraction: float = 0.15,
    seed: int = 42,
    progress: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """Train `config` (a TrainingConfig) on one fold's train rows (early-stopped on its inner
    validation rows) and score it on the fold's held-out rows."""
    import keras

    from braintumor.models.calibrated import calibrate_model
    from braintumor.models.inference import predict_proba
    from braintumor.training.dataset import load_split_arrays
    from braintumor.training.trainer import log_progress, train_model

    table = fold_splits(folds, scheme, fold, val_fraction, seed)
    data = load_split_arrays(table, data_root, config.preprocessing)
    start = time.perf_counter()
    try:
        result = train_model(config, data, progress=progress or log_progress)
        if config.refit_class_bias:
            calibrate_model(result.model, data.val.x, data.val.y, class_offsets=True)
        probs = predict_proba(result.model, data.test.x)
    finally:
        keras.backend.clear_session()
    return {
        "scheme": scheme,
        "fold": fold,
        "images": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
        "epochs_run": result.epochs_run,
        "seconds": round(time.perf_counter() - start, 1),
        **score_fold(data.test.y, probs, data.class_names),
    }


def _spread(values: Sequence[float]) -> dict[str, Any]:
    array = np.asarray(values, dtype=np.float64)
    std = float(array.std(ddof=1)) if len(array) > 1 else 0.0
    return {"mean": float(array.mean()), "std": std, "values": [float(v) for v in array]}


def summarize_folds(
    results: Sequence[dict[str, Any]], class_names: Sequence[str] = CLASS_NAMES
) -> dict[str, Any]:
    """Mean and standard deviation across folds per scheme, and the gap between schemes.

    Raises:
        CrossValidationError: a scheme misses a fold or has one twice.
    """
    summary: dict[str, Any] = {"schemes": {}}
    for scheme in SCHEMES:
        mine = sorted((r for r in results if r["scheme"] == scheme), key=lambda r: r["fold"])
        numbers = [r["fold"] for r in mine]
        if not mine or numbers != list(range(len(mine))):
            raise CrossValidationError(f"scheme {scheme} has folds {numbers}, not 0..k-1")
        summary["schemes"][scheme] = {
            "folds": len(mine),
            "test_images": int(sum(r["images"]["test"] for r in mine)),
            "weighted_f1": _spread([r["weighted_f1"] for r in mine]),
            "macro_f1": _spread([r["macro_f1"] for r in mine]),
            "recall": {c: _spread([r["recall"][c] for r in mine]) for c in class_names},
        }
    folds = {summary["schemes"][s]["folds"] for s in SCHEMES}
    if len(folds) != 1:
        raise CrossValidationError(f"the schemes have different fold counts {sorted(folds)}")
    summary["folds"] = folds.pop()
    grouped, ungrouped = (summary["schemes"][s] for s in SCHEMES)
    summary["gap"] = {
        "weighted_f1": ungrouped["weighted_f1"]["mean"] - grouped["weighted_f1"]["mean"],
        "macro_f1": ungrouped["macro_f1"]["mean"] - grouped["macro_f1"]["mean"],
    }
    summary["fold_results"] = [dict(r) for r in results]
    return summary


def headline(summary: dict[str, Any]) -> dict[str, float]:
    """Flat figures for run metadata: cv_<scheme>_<metric>_mean / _std."""
    flat: dict[str, float] = {"cv_folds": summary["folds"]}
    for scheme, figures in summary["schemes"].items():
        for metric in ("weighted_f1", "macro_f1"):
            flat[f"cv_{scheme}_{metric}_mean"] = figures[metric]["mean"]
            flat[f"cv_{scheme}_{metric}_std"] = figures[metric]["std"]
        for name, spread in figures["recall"].items():
            flat[f"cv_{scheme}_recall_{name}_mean"] = spread["mean"]
            flat[f"cv_{scheme}_recall_{name}_std"] = spread["std"]
    flat["cv_gap_weighted_f1"] = summary["gap"]["weighted_f1"]
    return flat


def render_cv_report(summary: dict[str, Any], title: str, details: dict[str, str]) -> str:
    """The summary as one self-contained HTML page (the run report's style)."""
    from braintumor.htmlkit import CSS

    grouped, ungrouped = (summary["schemes"][s] for s in SCHEMES)

    def cell(spread: dict[str, Any]) -> str:
        return f"{spread['mean']:.4f} ± {spread['std']:.4f}"

    metrics = [("weighted F1", "weighted_f1"), ("macro F1", "macro_f1")]
    rows = [
        (label, grouped[key], ungrouped[key], ungrouped[key]["mean"] - grouped[key]["mean"])
        for label, key in metrics
    ]
    rows += [
        (
            f"recall {name}",
            grouped["recall"][name],
            ungrouped["recall"][name],
            ungrouped["recall"][name]["mean"] - grouped["recall"][name]["mean"],
        )
        for name in grouped["recall"]
    ]
    body = "".join(
        f"<tr><td>{escape(label)}</td><td>{cell(g)}</td><td>{cell(u)}</td><td>{gap:+.4f}</td></tr>"
        for label, g, u, gap in rows
    )
    per_fold = "".join(
        f"<tr><td>{escape(r['scheme'])}</td><td>{r['fold']}</td><td>{r['images']['train']}</td>"
        f"<td>{r['images']['val']}</td><td>{r['images']['test']}</td>"
        f"<td>{r['weighted_f1']:.4f}</td><td>{r['macro_f1']:.4f}</td></tr>"
        for r in sorted(summary["fold_results"], key=lambda r: (r["scheme"], r["fold"]))
    )
    meta = " · ".join(f"{escape(k)} <code>{escape(v)}</code>" for k, v in details.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>{CSS}</style></head><body>
<h1>{escape(title)}</h1><p class="meta">{meta}</p>
<p class="note">Grouped: {grouped["folds"]} folds over the kept images ({grouped["test_images"]}),
stratified by class, every duplicate cluster in one fold. Ungrouped: the same number of folds
over all images including redundant copies ({ungrouped["test_images"]}), as the research did, so
a copy of a held-out image can be in training. The gap is what that leakage adds. Mean ±
standard deviation across folds (ddof=1).</p>
<table><tr><th>metric</th><th>grouped</th><th>ungrouped</th><th>gap</th></tr>{body}</table>
<h2>Folds</h2>
<table><tr><th>scheme</th><th>fold</th><th>train</th><th>val</th><th>held out</th>
<th>weighted F1</th><th>macro F1</th></tr>{per_fold}</table>
</body></html>
"""
