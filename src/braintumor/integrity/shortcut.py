"""Metadata shortcut check: can file metadata alone predict the label?

If the width, height, colour mode and file size of an image predict its class, a model can
learn the source instead of the anatomy (in the Kaggle set most tumour images are 512x512
slices from one source and most "no tumour" images are small web images). The check fits a
shallow decision tree on that metadata with stratified cross-validation and compares its
balanced accuracy with chance. The model itself must never see this metadata: it gets pixels
through `preprocessing.preprocess` only.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.tree import DecisionTreeClassifier, export_text

METADATA_FEATURES = ("width", "height", "aspect", "pixels", "file_size", "mode_code")
# The audit calls it a shortcut when metadata alone beats chance by this much (balanced
# accuracy over the classes), or separates "no tumour" from the tumour classes this well.
SHORTCUT_MARGIN = 0.25
SHORTCUT_BINARY = 0.85
TREE_DEPTH = 4
NO_TUMOUR = "notumor"


def metadata_table(manifest: pd.DataFrame) -> pd.DataFrame:
    width = manifest["width"].astype(float)
    height = manifest["height"].astype(float)
    modes = {mode: code for code, mode in enumerate(sorted(manifest["mode"].astype(str).unique()))}
    return pd.DataFrame(
        {
            "width": width,
            "height": height,
            "aspect": width / height.where(height > 0, 1.0),
            "pixels": width * height,
            "file_size": manifest["file_size"].astype(float),
            "mode_code": manifest["mode"].astype(str).map(modes).astype(float),
        },
        index=manifest.index,
    )


def _cv_balanced_accuracy(features: pd.DataFrame, labels: pd.Series, seed: int) -> float | None:
    counts = labels.value_counts()
    if len(counts) < 2 or counts.min() < 2:
        return None
    folds = int(min(5, counts.min()))
    tree = DecisionTreeClassifier(max_depth=TREE_DEPTH, random_state=seed, class_weight="balanced")
    predicted = cross_val_predict(
        tree, features, labels, cv=StratifiedKFold(folds, shuffle=True, random_state=seed)
    )
    return float(balanced_accuracy_score(labels, predicted))


def metadata_shortcut(manifest: pd.DataFrame, seed: int = 42) -> dict[str, Any]:
    """Cross-validated balanced accuracy of a metadata-only tree, per source split and overall.

    Returns a dict with, for each scope (`all` and each source split with two or more
    classes): `classes`, `chance`, `balanced_accuracy` (4-class), `notumor_vs_tumour`
    (binary balanced accuracy) and `shortcut` (bool); plus `shortcut` overall, the most
    frequent sizes per class, and a readable tree fitted on all images.
    """
    features = metadata_table(manifest)
    scopes: dict[str, Any] = {}
    groups = [("all", manifest.index)] + [
        (split, rows.index) for split, rows in manifest.groupby("split", sort=True)
    ]
    for scope, index in groups:
        labels = manifest.loc[index, "label"].astype(str)
        if labels.nunique() < 2:
            continue
        chance = 1.0 / labels.nunique()
        multi = _cv_balanced_accuracy(features.loc[index], labels, seed)
        binary = None
        if NO_TUMOUR in set(labels):
            binary = _cv_balanced_accuracy(
                features.loc[index],
                (labels == NO_TUMOUR).map({True: "notumor", False: "tumour"}),
                seed,
            )
        flagged = bool(
            (multi is not None and multi >= chance + SHORTCUT_MARGIN)
            or (binary is not None and binary >= SHORTCUT_BINARY)
        )
        scopes[scope] = {
            "images": len(index),
            "classes": int(labels.nunique()),
            "chance": round(chance, 4),
            "balanced_accuracy": None if multi is None else round(multi, 4),
            "notumor_vs_tumour": None if binary is None else round(binary, 4),
            "shortcut": flagged,
        }
    size = manifest["width"].astype(str) + "x" + manifest["height"].astype(str)
    dominant = str(size.mode().iloc[0]) if len(size) else ""
    size_table: dict[str, dict[str, Any]] = {}
    for (split, label), sizes in size.groupby([manifest["split"], manifest["label"]]):
        common = sizes.mode().iloc[0]
        size_table.setdefault(str(split), {})[str(label)] = {
            "most_common": str(common),
            "share": round(float((sizes == common).mean()), 4),
            "share_dominant_size": round(float((sizes == dominant).mean()), 4),
        }
    tree_text = ""
    all_labels = manifest["label"].astype(str)
    if all_labels.nunique() >= 2:
        tree = DecisionTreeClassifier(max_depth=3, random_state=seed, class_weight="balanced")
        tree.fit(features, all_labels)
        tree_text = export_text(tree, feature_names=list(METADATA_FEATURES), decimals=2)
    return {
        "features": list(METADATA_FEATURES),
        "model": (
            f"decision tree (depth {TREE_DEPTH}, balanced class weights), stratified 5-fold CV"
        ),
        "criterion": (
            f"shortcut when balanced accuracy >= chance + {SHORTCUT_MARGIN} or "
            f"no-tumour-vs-tumour balanced accuracy >= {SHORTCUT_BINARY}"
        ),
        "scopes": scopes,
        "shortcut": any(s["shortcut"] for s in scopes.values()),
        "dominant_size": dominant,
        "most_common_size": size_table,
        "tree": tree_text,
    }


def shortcut_sentence(result: dict[str, Any]) -> str:
    """One line for people: whether metadata predicts the label, and how well."""
    flagged = [name for name, s in result["scopes"].items() if s["shortcut"]]
    if not flagged:
        return "File metadata does not predict the label better than the shortcut criterion."
    parts = []
    for name in flagged:
        s = result["scopes"][name]
        binary = s["notumor_vs_tumour"]
        parts.append(
            f"{name}: balanced accuracy {s['balanced_accuracy']:.2f} (chance {s['chance']:.2f})"
            + (f", no tumour vs tumour {binary:.2f}" if binary is not None else "")
        )
    return (
        "SHORTCUT: image size and file metadata alone predict the label ("
        + "; ".join(parts)
        + "). The model must see pixels only (no size, aspect or file features), and "
        "evaluation should be read with this in mind."
    )
