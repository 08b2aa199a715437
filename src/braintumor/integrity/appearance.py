"""Appearance shortcut check: does the look of an image, not the tumour, predict the label?

In the Kaggle set nearly every tumour image is a contrast-enhanced T1 slice, while "no tumour"
is mostly web images, many of them T2-weighted. A model can learn "T2 look means no tumour".
The metadata check (`integrity.shortcut`) cannot see this: it is in the pixels. This module
measures it with cheap features of the head region, in three ways:

1. A sequence-type proxy (`sequence_group`), from two documented rules on the slice
   downscaled to `SIDE` px. The reference is the scalp band (the outer `SCALP_DEPTH` of the
   head): subcutaneous fat is the brightest tissue in T1 images (with or without contrast),
   and a tumour hardly ever lies in it. The brain interior is the part deeper than `INNER_DEPTH`.
   - `t2_like`: CSF brighter than fat. At least `T2_BRIGHT_SHARE` of the interior is
     brighter than the scalp band's 90th percentile, and those bright pixels are spread over
     several regions (`T2_SPREAD`: ventricles, sulci), not one blob (an enhancing tumour).
   - `bright_tissue`: no bright CSF, but the brain's median is at least `BRIGHT_TISSUE` of the
     scalp band's 90th percentile. FLAIR, diffusion and non-contrast T1 look like this.
   - `t1_like`: the rest. Fat brightest, brain well below it: the look of contrast-enhanced T1,
     and of almost every tumour image in the Kaggle set.
   Checked by eye on contact sheets of the Kaggle Training images: `t2_like` holds T2 slices
   and some FLAIR, diffusion and sagittal slices (none of them the contrast-enhanced T1 look),
   plus large enhancing tumours brighter than fat; it misses T2 slices whose scalp is as
   bright as their CSF. It is a conservative proxy: the enhancing tumours it takes in lower
   the measured no-tumour share. The thresholds trade those against missed T2 slices (lower
   ones take in many T1 slices with enhancing vessels).
2. KMeans clusters (`HISTOGRAM_CLUSTERS`) of the head-region intensity histograms.
3. A probe: logistic regression on the appearance features only (`APPEARANCE_FEATURES`: the
   intensity profile inside the head, and how much of the frame the head fills), stratified
   5-fold CV, balanced accuracy against chance, as in `integrity.shortcut`.
   Histograms can carry some tumour signal (an enhancing lesion adds bright pixels), so the
   probe is an upper bound on the shortcut; the group table is the specific evidence.

The warning is about training images (source split `training`, or all images when a source
has no such split): "N% of T2-like training images are labelled no tumour", flagged as a
shortcut when N exceeds the share of no tumour among all those images by `SHORTCUT_MARGIN`
(with at least `MIN_GROUP_IMAGES` T2-like images), or when the probe passes the criterion of
the metadata check. Every function returns plain, JSON-ready values for `audit.json`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from braintumor.integrity.shortcut import NO_TUMOUR, SHORTCUT_BINARY
from braintumor.integrity.shortcut import SHORTCUT_MARGIN as PROBE_MARGIN
from braintumor.integrity.verify import load_gray
from braintumor.integrity.workers import DEFAULT_WORKERS, map_path_batches

SIDE = 128  # images are downscaled so their longest side is this many pixels
# Head mask: as `integrity.verify.head_box`, brighter than the border's median by this much
# (background capped), opened, components of at least this share of the largest; then
# holes filled, so dark CSF inside the head belongs to it.
HEAD_DELTA = 20
MAX_BACKGROUND = 60.0
MIN_COMPONENT = 0.1
# Depths as shares of the deepest point of the head mask (distance to its edge).
SCALP_DEPTH = 0.10
INNER_DEPTH = 0.25
# Sequence-type rules (see the module docstring).
T2_BRIGHT_SHARE = 0.08
T2_SPREAD = 0.3
BRIGHT_TISSUE = 0.6
T2_LIKE, BRIGHT_TISSUE_GROUP, T1_LIKE = "t2_like", "bright_tissue", "t1_like"
GROUPS = (T1_LIKE, T2_LIKE, BRIGHT_TISSUE_GROUP)
GROUP_DESCRIPTIONS = {
    T1_LIKE: "fat brightest, brain well below it (contrast-enhanced T1 look)",
    T2_LIKE: "CSF brighter than fat, spread over several regions (T2 look)",
    BRIGHT_TISSUE_GROUP: "no bright CSF, brain nearly as bright as fat (FLAIR, DWI, plain T1)",
}
HISTOGRAM_BINS = 16
HISTOGRAM_CLUSTERS = 6
PERCENTILES = (5, 10, 25, 50, 75, 90, 95)
# The warning fires when the no-tumour share among T2-like training images beats the
# no-tumour share among all training images by this much, over at least this many images.
SHORTCUT_MARGIN = 0.25
MIN_GROUP_IMAGES = 10
EXAMPLES = 4
TRAINING = "training"

APPEARANCE_FEATURES: tuple[str, ...] = (
    *(f"hist_{k:02d}" for k in range(HISTOGRAM_BINS)),
    *(f"p{q:02d}" for q in PERCENTILES),
    "mean",
    "std",
    "skewness",
    "kurtosis",
    "bright_share",
    "dark_share",
    "scalp_p90",
    "inner_median",
    "inner_iqr",
    "inner_p98_vs_scalp",
    "csf_bright_share",
    "bright_spread",
    "tissue_vs_scalp",
    "head_fraction",
)


def downscale(gray: np.ndarray, side: int = SIDE) -> np.ndarray:
    """Shrink so the longest side is `side` (never enlarge); uint8 in and out."""
    gray = np.ascontiguousarray(gray, dtype=np.uint8)
    height, width = gray.shape[:2]
    scale = side / max(height, width)
    if scale >= 1:
        return gray
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA)


def head_mask(gray: np.ndarray) -> np.ndarray:
    """Boolean mask of the head (holes filled); the whole image when nothing stands out."""
    rows, cols = gray.shape
    band = max(1, round(min(rows, cols) * 0.02))
    border = np.concatenate(
        [gray[:band].ravel(), gray[-band:].ravel(), gray[:, :band].ravel(), gray[:, -band:].ravel()]
    )
    background = min(float(np.median(border)), MAX_BACKGROUND)
    mask = (gray > background + HEAD_DELTA).astype(np.uint8)
    opened = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    if opened.any():
        mask = opened
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:
        return np.ones(gray.shape, dtype=bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    kept = np.zeros(count, dtype=np.uint8)  # per label: 1 for the components kept
    kept[1:] = areas >= MIN_COMPONENT * areas.max()
    mask = kept[labels]
    # fill holes: what the background, flooded from outside the image, does not reach
    outside = np.pad(mask, 1)
    cv2.floodFill(outside, None, (0, 0), 1)
    holes = outside[1:-1, 1:-1] == 0
    return mask.astype(bool) | holes


def _moments(values: np.ndarray) -> tuple[float, float, float, float]:
    mean, std = float(values.mean()), float(values.std())
    if std < 1e-9:
        return mean, std, 0.0, 0.0
    z = (values - mean) / std
    return mean, std, float((z**3).mean()), float((z**4).mean() - 3.0)


def _bright_spread(bright: np.ndarray) -> float:
    """1 - (largest connected region / all bright pixels): 0 for one blob, near 1 for many."""
    count, _, stats, _ = cv2.connectedComponentsWithStats(bright.astype(np.uint8), connectivity=8)
    if count <= 1:
        return 0.0
    areas = stats[1:, cv2.CC_STAT_AREA]
    return float(1.0 - areas.max() / areas.sum())


def appearance_features(gray: np.ndarray) -> dict[str, float]:
    """Cheap appearance features of one grayscale slice, inside its head region.

    Intensities are normalised to the head's own range (its 1st to 99th percentile -> 0..1),
    so brightness and contrast settings cancel out; the features describe the shape of the
    histogram and where the brightest tissue lies (see the module docstring).
    """
    small = downscale(gray)
    mask = head_mask(small)
    values = small.astype(np.float64)
    head = values[mask]
    low, high = np.percentile(head, [1, 99])
    scale = high - low if high > low else 1.0
    norm = np.clip((values - low) / scale, 0.0, 1.0)
    head = norm[mask]
    depth = cv2.distanceTransform(np.pad(mask.astype(np.uint8), 1), cv2.DIST_L2, 3)[1:-1, 1:-1]
    deepest = float(depth.max())
    scalp = mask & (depth <= max(SCALP_DEPTH * deepest, 2.0))
    inner = mask & (depth >= INNER_DEPTH * deepest)
    if not inner.any():
        inner = mask
    if not scalp.any():
        scalp = mask
    scalp_p90 = float(np.percentile(norm[scalp], 90))
    interior = norm[inner]
    q25, q50, q75, q98 = np.percentile(interior, [25, 50, 75, 98])
    bright = inner & (norm > scalp_p90)
    histogram, _ = np.histogram(head, bins=HISTOGRAM_BINS, range=(0.0, 1.0))
    histogram = histogram / max(histogram.sum(), 1)
    mean, std, skewness, kurtosis = _moments(head)
    features = {f"hist_{k:02d}": float(v) for k, v in enumerate(histogram)}
    features.update(
        {
            f"p{q:02d}": float(v)
            for q, v in zip(PERCENTILES, np.percentile(head, PERCENTILES), strict=True)
        }
    )
    features.update(
        {
            "mean": mean,
            "std": std,
            "skewness": skewness,
            "kurtosis": kurtosis,
            "bright_share": float((head > 0.75).mean()),
            "dark_share": float((head < 0.25).mean()),
            "scalp_p90": scalp_p90,
            "inner_median": float(q50),
            "inner_iqr": float(q75 - q25),
            "inner_p98_vs_scalp": float(q98 / max(scalp_p90, 1e-3)),
            "csf_bright_share": float(bright[inner].mean()),
            "bright_spread": _bright_spread(bright),
            "tissue_vs_scalp": float(q50 / max(scalp_p90, 1e-3)),
            "head_fraction": float(mask.mean()),
        }
    )
    return features


def appearance_table(images: Sequence[np.ndarray]) -> pd.DataFrame:
    """One row of `APPEARANCE_FEATURES` per image."""
    return pd.DataFrame(
        [appearance_features(image) for image in images], columns=list(APPEARANCE_FEATURES)
    )


def _appearance_of(
    data_root: Path, paths: list[str], loader: Callable[[Path], np.ndarray]
) -> list[dict[str, float]]:
    return [appearance_features(loader(Path(data_root) / path)) for path in paths]


def load_appearance(
    data_root: Path,
    paths: Sequence[str],
    loader: Callable[[Path], np.ndarray] = load_gray,
    workers: int = DEFAULT_WORKERS,
) -> pd.DataFrame:
    """`appearance_table` of the images at `paths` (relative to `data_root`), read in
    `workers` processes (default: one per core; `loader` must then be a module-level function)."""
    results = map_path_batches(_appearance_of, data_root, paths, loader, workers)
    rows = [row for part in results for row in part]
    return pd.DataFrame(rows, columns=list(APPEARANCE_FEATURES))


def sequence_group(features: pd.DataFrame) -> pd.Series:
    """The sequence-type proxy of each row: `t2_like`, `bright_tissue` or `t1_like`."""
    t2 = (features["csf_bright_share"] >= T2_BRIGHT_SHARE) & (
        features["bright_spread"] >= T2_SPREAD
    )
    bright_tissue = ~t2 & (features["tissue_vs_scalp"] >= BRIGHT_TISSUE)
    groups = np.where(t2, T2_LIKE, np.where(bright_tissue, BRIGHT_TISSUE_GROUP, T1_LIKE))
    return pd.Series(groups, index=features.index, name="appearance_group")


def histogram_clusters(
    features: pd.DataFrame, clusters: int = HISTOGRAM_CLUSTERS, seed: int = 42
) -> np.ndarray:
    """KMeans cluster (0..clusters-1) of each row's head-region histogram."""
    histograms = features[[f"hist_{k:02d}" for k in range(HISTOGRAM_BINS)]].to_numpy()
    clusters = int(min(clusters, len(np.unique(histograms, axis=0))))
    if clusters < 2:
        return np.zeros(len(features), dtype=np.int64)
    model = KMeans(n_clusters=clusters, n_init=10, random_state=seed)
    return model.fit_predict(histograms).astype(np.int64)


def _distribution(groups: pd.Series, labels: pd.Series) -> dict[str, Any]:
    """Per group: images, counts per class, and each class's share of the group."""
    table: dict[str, Any] = {}
    for group, members in labels.groupby(groups.to_numpy(), sort=True):
        counts = members.value_counts().sort_index()
        table[str(group)] = {
            "images": len(members),
            "counts": {str(k): int(v) for k, v in counts.items()},
            "share_by_label": {
                str(k): round(float(v) / len(members), 4) for k, v in counts.items()
            },
        }
    return table


def _class_profile(groups: pd.Series, labels: pd.Series) -> dict[str, dict[str, float]]:
    """Per class: the share of its images in each group."""
    shares = pd.crosstab(labels.to_numpy(), groups.to_numpy(), normalize="index")
    return {
        str(label): {str(g): round(float(v), 4) for g, v in row.items()}
        for label, row in shares.iterrows()
    }


def _probe(features: pd.DataFrame, labels: pd.Series, seed: int) -> float | None:
    counts = labels.value_counts()
    if len(counts) < 2 or counts.min() < 2:
        return None
    folds = int(min(5, counts.min()))
    model = make_pipeline(
        StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced")
    )
    predicted = cross_val_predict(
        model,
        features.to_numpy(),
        labels.to_numpy(),
        cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
    )
    return float(balanced_accuracy_score(labels, predicted))


def appearance_shortcut(
    features: pd.DataFrame,
    labels: Sequence[str] | pd.Series,
    splits: Sequence[str] | pd.Series | None = None,
    paths: Sequence[str] | None = None,
    seed: int = 42,
    clusters: int = HISTOGRAM_CLUSTERS,
) -> dict[str, Any]:
    """Whether appearance alone predicts the label (see the module docstring).

    Args:
        features: `appearance_table` rows, one per image.
        labels: canonical class names (`notumor` is the no-tumour class).
        splits: the source split of each image; the warning and probe use `training` images
            when there are any, else all images.
        paths: manifest paths, for a few example images per group in the report (a seeded
            random choice, so they do not all come from one scan).
        seed: for the CV folds and KMeans.
        clusters: KMeans clusters of the head histograms.

    Returns:
        A JSON-ready dict: `images_used`, `groups` / `clusters` (per scope: distribution per
        group and per class), `probe`, `t2_like_notumor_share`, `notumor_base_share`,
        `shortcut` and the `summary` sentence.
    """
    features = features.reset_index(drop=True)
    labels = pd.Series(list(labels), dtype=str)
    splits = pd.Series(["all"] * len(labels) if splits is None else list(splits), dtype=str)
    if not len(features) == len(labels) == len(splits):
        raise ValueError("features, labels and splits must hold one row per image")
    groups = sequence_group(features)
    cluster_ids = pd.Series(histogram_clusters(features, clusters, seed)).map(
        lambda c: f"cluster_{c}"
    )
    has_training = bool((splits == TRAINING).any())
    used = (splits == TRAINING) if has_training else pd.Series(True, index=labels.index)
    scope_name = TRAINING if has_training else "all"
    used_labels, used_groups = labels[used], groups[used]

    scopes = [(scope_name, used)] + [
        (str(split), splits == split) for split in sorted(splits.unique()) if split != scope_name
    ]
    group_tables = {
        name: {
            "images": int(rows.sum()),
            "by_group": _distribution(groups[rows], labels[rows]),
            "by_class": _class_profile(groups[rows], labels[rows]),
        }
        for name, rows in scopes
    }
    cluster_tables = {
        name: {
            "by_cluster": _distribution(cluster_ids[rows], labels[rows]),
            "sequence_groups": {
                str(c): {str(g): int(n) for g, n in members.value_counts().sort_index().items()}
                for c, members in groups[rows].groupby(cluster_ids[rows].to_numpy(), sort=True)
            },
        }
        for name, rows in scopes
    }

    chance = 1.0 / max(used_labels.nunique(), 1)
    multi = _probe(features[used], used_labels, seed)
    binary = None
    if NO_TUMOUR in set(used_labels) and used_labels.nunique() >= 2:
        binary = _probe(
            features[used], (used_labels == NO_TUMOUR).map({True: NO_TUMOUR, False: "tumour"}), seed
        )
    probe_flag = bool(
        (multi is not None and multi >= chance + PROBE_MARGIN)
        or (binary is not None and binary >= SHORTCUT_BINARY)
    )
    t2_labels = used_labels[used_groups == T2_LIKE]
    t2_share = float((t2_labels == NO_TUMOUR).mean()) if len(t2_labels) else None
    base_share = float((used_labels == NO_TUMOUR).mean()) if len(used_labels) else None
    group_flag = bool(
        t2_share is not None
        and base_share is not None
        and len(t2_labels) >= MIN_GROUP_IMAGES
        and t2_share >= base_share + SHORTCUT_MARGIN
    )
    examples: dict[str, list[str]] = {}
    if paths is not None:
        path_series = pd.Series(list(paths), dtype=str)
        for group in GROUPS:
            for tumour in (False, True):
                rows = used & (groups == group) & ((labels != NO_TUMOUR) == tumour)
                key = f"{group}/{'tumour' if tumour else NO_TUMOUR}"
                chosen = np.random.default_rng(seed).permutation(np.flatnonzero(rows))
                examples[key] = sorted(path_series.iloc[chosen[:EXAMPLES]])
    result = {
        "images_used": (
            f"{int(used.sum())} images of source split {scope_name}"
            if has_training
            else f"all {int(used.sum())} images (no source split named training)"
        ),
        "scope": scope_name,
        "image_side": SIDE,
        "features": list(APPEARANCE_FEATURES),
        "groups_rule": {
            "t2_like": (f"csf_bright_share >= {T2_BRIGHT_SHARE} and bright_spread >= {T2_SPREAD}"),
            "bright_tissue": f"not t2_like and tissue_vs_scalp >= {BRIGHT_TISSUE}",
            "t1_like": "otherwise",
        },
        "group_descriptions": dict(GROUP_DESCRIPTIONS),
        "groups": group_tables,
        "clusters": cluster_tables,
        "probe": {
            "model": (
                "logistic regression (standardised features, balanced class weights), "
                "stratified 5-fold CV"
            ),
            "images": int(used.sum()),
            "classes": int(used_labels.nunique()),
            "chance": round(chance, 4),
            "balanced_accuracy": None if multi is None else round(multi, 4),
            "notumor_vs_tumour": None if binary is None else round(binary, 4),
            "shortcut": probe_flag,
        },
        "t2_like_images": len(t2_labels),
        "t2_like_notumor_share": None if t2_share is None else round(t2_share, 4),
        "notumor_base_share": None if base_share is None else round(base_share, 4),
        "criterion": (
            f"shortcut when the no-tumour share of T2-like {scope_name} images is at least "
            f"{SHORTCUT_MARGIN:.2f} above the no-tumour share of all {scope_name} images (over "
            f"at least {MIN_GROUP_IMAGES} T2-like images), or the probe reaches balanced "
            f"accuracy >= chance + {PROBE_MARGIN} or no-tumour-vs-tumour >= {SHORTCUT_BINARY}"
        ),
        "group_shortcut": group_flag,
        "shortcut": group_flag or probe_flag,
        "examples": examples,
    }
    result["summary"] = appearance_sentence(result)
    return result


def appearance_sentence(result: dict[str, Any]) -> str:
    """One line for people: how often T2-like images are no tumour, and the probe's score."""
    scope = result["scope"]
    images = "training images" if scope == TRAINING else "images"
    probe = result["probe"]
    parts = []
    if probe["balanced_accuracy"] is not None:
        parts.append(
            f"an appearance-only probe reaches balanced accuracy {probe['balanced_accuracy']:.2f} "
            f"(chance {probe['chance']:.2f})"
        )
    if probe["notumor_vs_tumour"] is not None:
        parts.append(f"no tumour vs tumour {probe['notumor_vs_tumour']:.2f}")
    probe_text = ", ".join(parts)
    share, base = result["t2_like_notumor_share"], result["notumor_base_share"]
    if share is None:
        body = f"No {images} look T2-weighted"
    else:
        body = (
            f"{share:.0%} of T2-like {images} ({result['t2_like_images']}) are labelled no "
            f"tumour, against {base:.0%} of all {images}"
        )
    body = body + (f"; {probe_text}" if probe_text else "")
    if result["shortcut"]:
        return (
            f"SHORTCUT: {body}. Image appearance (sequence type, intensity profile) predicts "
            "the label: a model can learn the scanner sequence instead of the tumour; read "
            "evaluation on this data with that in mind."
        )
    return f"Image appearance does not predict the label beyond the criterion: {body}."


def audit_appearance(
    data_root: Path,
    manifest: pd.DataFrame,
    loader: Callable[[Path], np.ndarray] = load_gray,
    seed: int = 42,
    workers: int = DEFAULT_WORKERS,
    features: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """`appearance_shortcut` of the images of an ingested manifest (the audit calls this).

    `features`: `appearance_table` rows of the manifest's images, when the caller has them
    already (`integrity.images.read_images`); None reads the images.
    """
    if features is None:
        features = load_appearance(data_root, manifest["path"].tolist(), loader, workers)
    elif len(features) != len(manifest):
        raise ValueError("features must hold one row per manifest row")
    return appearance_shortcut(
        features,
        manifest["label"].astype(str),
        manifest["split"].astype(str) if "split" in manifest.columns else None,
        paths=manifest["path"].astype(str).tolist(),
        seed=seed,
    )
