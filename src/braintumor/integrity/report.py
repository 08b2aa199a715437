"""The audit as one self-contained HTML file (`braintumor.htmlkit`): tables of figures and
example pairs, with PNG thumbnails inline.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from braintumor.htmlkit import data_uri, image, page, table
from braintumor.htmlkit import escape as _e
from braintumor.integrity.dedup import Duplicates
from braintumor.integrity.figures import image_sources
from braintumor.integrity.verify import load_gray

THUMBNAIL = 160
EXAMPLES_PER_KIND = 4


def thumbnail_data_uri(gray: np.ndarray, size: int = THUMBNAIL) -> str:
    """A PNG thumbnail (longest side `size`) as a data URI."""
    height, width = gray.shape[:2]
    scale = size / max(height, width)
    if scale < 1:
        gray = cv2.resize(
            gray, (max(1, round(width * scale)), max(1, round(height * scale))), cv2.INTER_AREA
        )
    ok, encoded = cv2.imencode(".png", gray)
    if not ok:
        raise ValueError("could not encode a thumbnail")
    return data_uri(encoded.tobytes())


def _nested_table(nested: dict[str, dict[str, int]], row_name: str) -> str:
    """Rows: the outer keys; columns: the union of the inner keys; plus totals."""
    columns = sorted({key for inner in nested.values() for key in inner})
    rows = [
        [outer, *(inner.get(c, 0) for c in columns), sum(inner.values())]
        for outer, inner in sorted(nested.items())
    ]
    totals = ["total", *(sum(inner.get(c, 0) for inner in nested.values()) for c in columns)]
    rows.append([*totals, sum(totals[1:])])
    return table(rows, [row_name, *columns, "total"])


class _Images:
    """Thumbnails of manifest paths, read once."""

    def __init__(self, data_root: Path, loader: Callable[[Path], np.ndarray]) -> None:
        self.data_root, self.loader, self.cache = Path(data_root), loader, {}

    def uri(self, path: str) -> str:
        if path not in self.cache:
            try:
                self.cache[path] = thumbnail_data_uri(self.loader(self.data_root / path))
            except Exception:  # a report must not fail on one unreadable example
                self.cache[path] = ""
        return self.cache[path]


def _figure(images: _Images, paths: list[str], caption: str) -> str:
    tags = "".join(image(images.uri(p), alt=p, title=p) for p in paths if images.uri(p))
    return f'<div class="pair">{tags}<div class="caption">{caption}</div></div>'


def _pair_examples(
    images: _Images, manifest: pd.DataFrame, pairs: pd.DataFrame, describe: Callable[[Any], str]
) -> str:
    if pairs.empty:
        return "<p>None found.</p>"
    paths = manifest["path"].to_numpy()
    blocks = [
        _figure(images, [paths[row.i], paths[row.j]], describe(row))
        for row in pairs.head(EXAMPLES_PER_KIND).itertuples()
    ]
    return '<div class="pairs">' + "".join(blocks) + "</div>"


def _examples(images: _Images, manifest: pd.DataFrame, duplicates: Duplicates) -> dict[str, str]:
    paths, labels, splits = (manifest[c].to_numpy() for c in ("path", "label", "split"))

    def names(row: Any) -> str:
        return (
            f"{_e(paths[row.i])} ({_e(labels[row.i])})<br>{_e(paths[row.j])} ({_e(labels[row.j])})"
        )

    pairs, candidates = duplicates.pairs, duplicates.candidates
    exact = pairs[pairs["kind"] == "exact"]
    if "sha256" in manifest.columns:  # prefer copies whose bytes differ: the case bytes miss
        sha = manifest["sha256"].to_numpy()
        differs = sha[exact["i"].to_numpy()] != sha[exact["j"].to_numpy()]
        exact = pd.concat([exact[differs], exact[~differs]])
    near = pairs[pairs["kind"] == "near"].sort_values("score")
    rejected = candidates[~candidates["same"]].sort_values("score", ascending=False)
    cross_split = splits[pairs["i"].to_numpy()] != splits[pairs["j"].to_numpy()]
    # near copies first (the ones byte hashes miss), one example per class where possible
    leak = pairs[cross_split].assign(_label=labels[pairs["i"].to_numpy()][cross_split])
    leak = leak.sort_values(["kind", "score"], ascending=[False, True])
    leak = pd.concat([leak.drop_duplicates("_label"), leak]).drop_duplicates(["i", "j"])
    return {
        "exact": _pair_examples(
            images, manifest, exact, lambda r: "identical pixels<br>" + names(r)
        ),
        "near": _pair_examples(
            images,
            manifest,
            near,
            lambda r: (
                f"score {r.score:.3f}, pHash distance {r.hash_distance}"
                f"{' (mirrored)' if r.mirrored else ''}<br>" + names(r)
            ),
        ),
        "rejected": _pair_examples(
            images,
            manifest,
            rejected,
            lambda r: (
                f"NOT merged: score {r.score:.3f} although pHash distance is "
                f"{r.hash_distance}<br>" + names(r)
            ),
        ),
        "leak": _pair_examples(
            images, manifest, leak, lambda r: f"{r.kind} duplicate across splits<br>" + names(r)
        ),
    }


def _source_examples(images: _Images, manifest: pd.DataFrame, duplicates: Duplicates) -> str:
    """Copies across sources: one pair per pair of sources and kind first (mirrored, near,
    exact), then the closest calls."""
    sources, paths, labels = image_sources(manifest), manifest["path"].to_numpy(), manifest["label"]
    pairs = duplicates.pairs
    i, j = pairs["i"].to_numpy(), pairs["j"].to_numpy()
    across = pairs[sources[i] != sources[j]]
    if across.empty:
        return "<p>No picture is in two sources.</p>"
    a, b = sources[across["i"].to_numpy()], sources[across["j"].to_numpy()]
    near = np.where(across["kind"] == "near", "near", "exact")
    kind = np.where(across["mirrored"].astype(bool), "mirrored", near)
    ranked = across.assign(
        source_pair=[f"{min(x, y)}|{max(x, y)}" for x, y in zip(a, b, strict=True)],
        copy_kind=kind,
        kind_rank=pd.Series(kind).map({"mirrored": 0, "near": 1, "exact": 2}).to_numpy(),
    ).sort_values(["kind_rank", "score"])
    ranked = pd.concat([ranked.drop_duplicates(["source_pair", "copy_kind"]), ranked])
    ranked = ranked.drop_duplicates(["i", "j"])
    label_of = labels.to_numpy()
    blocks = [
        _figure(
            images,
            [paths[row.i], paths[row.j]],
            f"{_e(row.copy_kind)} copy across sources, score {row.score:.3f}<br>"
            f"{_e(sources[row.i])}: {_e(paths[row.i])} ({_e(label_of[row.i])})<br>"
            f"{_e(sources[row.j])}: {_e(paths[row.j])} ({_e(label_of[row.j])})",
        )
        for row in ranked.head(2 * EXAMPLES_PER_KIND).itertuples()
    ]
    return '<div class="pairs">' + "".join(blocks) + "</div>"


def _sources_section(
    images: _Images, manifest: pd.DataFrame, duplicates: Duplicates, figures: dict[str, Any]
) -> str:
    sources = figures["sources"]
    names = sources["sources"]
    shared, links = sources["shared_images"], sources["pairs_across_sources"]
    parts = [
        _nested_table(sources["images_by_source_class"], "source"),
        "<p>Images of the row's source with a copy (exact, near or mirrored: the same duplicate "
        "cluster) in the column's source; on the diagonal, images with another copy in their "
        "own source. Unique: images with no copy in any other source.</p>",
        table(
            [[a, *(shared[a][b] for b in names), sources["unique_images"][a]] for a in names],
            ["source", *names, "unique to it"],
        ),
        "<p>Duplicate links across sources: "
        + _e(", ".join(f"{k.replace('_', ' ')} {v}" for k, v in links.items()))
        + f"; {sources['clusters_spanning_sources']} clusters span sources. Clusters span sources,"
        " so every copy of a test image is in the test split, whatever its source.</p>",
    ]
    if "kept_by_source_split" in sources:
        parts.append("<p>Kept images per source and split (protocol resplit):</p>")
        parts.append(_nested_table(sources["kept_by_source_split"], "source"))
    conflicts = sources["label_conflicts"]
    parts.append(
        f"<p>Label conflicts across sources: {conflicts['clusters']} clusters "
        f"({conflicts['images']} images) whose copies in different sources carry different "
        "labels.</p>"
    )
    if conflicts["list"]:
        rows = [
            [
                c["cluster_id"],
                "; ".join(
                    f"{source}: " + ", ".join(f"{k} {v}" for k, v in by_label.items())
                    for source, by_label in c["labels_by_source"].items()
                ),
            ]
            for c in conflicts["list"][: 4 * EXAMPLES_PER_KIND]
        ]
        parts.append(table(rows, ["cluster", "labels by source"]))
    parts.append(_source_examples(images, manifest, duplicates))
    return "\n".join(parts)


def _conflict_examples(images: _Images, figures: dict[str, Any]) -> str:
    listing = figures["label_conflicts"]["list"]
    if not listing:
        return '<p class="ok">No duplicate cluster carries more than one label.</p>'
    blocks = []
    for conflict in listing[:EXAMPLES_PER_KIND]:
        labels = ", ".join(f"{k}: {v}" for k, v in conflict["labels"].items())
        blocks.append(
            _figure(
                images,
                conflict["paths"][:6],
                f"cluster {conflict['cluster_id']} ({labels})<br>"
                + "<br>".join(_e(p) for p in conflict["paths"]),
            )
        )
    return '<div class="pairs">' + "".join(blocks) + "</div>"


def _group_rows(by_group: dict[str, Any], classes: list[str]) -> list[list[Any]]:
    rows = []
    for group, info in by_group.items():
        counts, shares = info["counts"], info["share_by_label"]
        rows.append(
            [
                group,
                info["images"],
                *(f"{counts.get(c, 0)} ({shares.get(c, 0.0):.0%})" for c in classes),
            ]
        )
    return rows


def _appearance_section(images: _Images, appearance: dict[str, Any] | None) -> str:
    """The appearance shortcut: sequence-type groups, histogram clusters, probe, examples."""
    if not appearance:
        return "<p>Not measured in this audit.</p>"
    scope, probe = appearance["scope"], appearance["probe"]
    parts = [
        f'<p class="{"warn" if appearance["shortcut"] else "ok"}">{_e(appearance["summary"])}</p>',
        f"<p>Images used for the warning and the probe: {_e(appearance['images_used'])}. "
        "Features are taken inside the head region of each slice downscaled to "
        f"{_e(appearance.get('image_side', ''))} px, "
        "intensities normalised to the head's own range. Sequence-type proxy (the scalp band "
        "is the reference: fat is the brightest tissue in T1 images):</p>",
        table(
            [
                [g, appearance["group_descriptions"].get(g, ""), rule]
                for g, rule in appearance["groups_rule"].items()
            ],
            ["group", "look", "rule"],
        ),
        f"<p>{_e(appearance['criterion'])}.</p>",
    ]
    for name, grouped in appearance["groups"].items():
        classes = sorted({c for info in grouped["by_group"].values() for c in info["counts"]})
        parts.append(f"<h3>Sequence-type groups, source split {_e(name)}</h3>")
        parts.append("<p>Images per group and class (share of the group):</p>")
        parts.append(
            table(_group_rows(grouped["by_group"], classes), ["group", "images", *classes])
        )
        groups = sorted({g for shares in grouped["by_class"].values() for g in shares})
        parts.append("<p>Share of each class's images in each group:</p>")
        parts.append(
            table(
                [
                    [label, *(f"{shares.get(g, 0.0):.0%}" for g in groups)]
                    for label, shares in grouped["by_class"].items()
                ],
                ["class", *groups],
            )
        )
    clusters = appearance["clusters"].get(scope)
    if clusters:
        by_cluster = clusters["by_cluster"]
        classes = sorted({c for info in by_cluster.values() for c in info["counts"]})
        rows = _group_rows(by_cluster, classes)
        for row, cluster in zip(rows, by_cluster, strict=True):
            mix = clusters["sequence_groups"].get(cluster, {})
            row.append(", ".join(f"{g} {n}" for g, n in mix.items()))
        parts.append(f"<h3>KMeans clusters of head histograms, source split {_e(scope)}</h3>")
        parts.append(table(rows, ["cluster", "images", *classes, "sequence groups"]))
    parts.append("<h3>Appearance-only probe</h3>")
    parts.append(f"<p>{_e(probe['model'])} on {len(appearance['features'])} features.</p>")
    parts.append(
        table(
            [
                [
                    scope,
                    probe["images"],
                    probe["balanced_accuracy"],
                    probe["chance"],
                    probe["notumor_vs_tumour"],
                    "yes" if probe["shortcut"] else "no",
                ]
            ],
            ["scope", "images", "balanced accuracy", "chance", "no tumour vs tumour", "shortcut"],
        )
    )
    examples = [
        _figure(images, paths, _e(key.replace("/", ", labelled ")))
        for key, paths in appearance.get("examples", {}).items()
        if paths
    ]
    if examples:
        parts.append(f"<h3>Examples per group ({_e(scope)} images)</h3>")
        parts.append('<div class="pairs">' + "".join(examples) + "</div>")
    return "\n".join(parts)


def _source_totals(nested: dict[str, dict[str, int]]) -> dict[str, int]:
    return {source: sum(by_label.values()) for source, by_label in nested.items()}


def render_report(
    data_root: Path,
    manifest: pd.DataFrame,
    duplicates: Duplicates,
    figures: dict[str, Any],
    loader: Callable[[Path], np.ndarray] = load_gray,
) -> str:
    """The report's HTML text (see `write_report`)."""
    images = _Images(data_root, loader)
    manifest = manifest.reset_index(drop=True)
    examples = _examples(images, manifest, duplicates)
    clusters, leakage, near = figures["clusters"], figures["leakage"], figures["near"]
    conflicts, shortcut = figures["label_conflicts"], figures["shortcut"]
    protocols = figures["protocols"]
    official = protocols.get("official", {}).get("official")
    loose_key = next(k for k in near if k.startswith("pairs_within_"))
    loose = near[loose_key]

    summary = [
        f"{figures['images']['total']} images; {clusters['clusters']} duplicate clusters hold "
        f"{clusters['images_in_clusters']} images, of which {clusters['redundant_images']} "
        f"({clusters['redundant_share']:.1%}) are redundant copies.",
        f"{conflicts['clusters']} clusters carry more than one label ({conflicts['images']} "
        "images, quarantined).",
    ]
    sources = figures["sources"]
    if len(sources["sources"]) > 1:
        with_copy = {
            a: n - sources["unique_images"][a]
            for a, n in _source_totals(sources["images_by_source_class"]).items()
        }
        summary.append(
            f"{len(sources['sources'])} sources; images with a copy in another source: "
            + ", ".join(f"{a} {n}" for a, n in with_copy.items())
            + f"; {sources['label_conflicts']['clusters']} label conflicts across sources."
        )
    if leakage["testing_images"]:
        summary.append(
            f"{leakage['testing_with_training_twin']} of {leakage['testing_images']} Testing "
            f"images ({leakage['share_of_testing']:.1%}) are the same picture as a Training image."
        )
    if official:
        left = ", ".join(f"{k} {v}" for k, v in official["test_left_by_class"].items()) or "none"
        summary.append(
            f"Protocol official: {official['test_left']} Testing images are left after removing "
            f"twins and duplicates ({left})."
        )
    held = protocols.get("leave-source-out", {}).get("leave_source_out")
    if held:
        left = ", ".join(f"{k} {v}" for k, v in held["test_left_by_class"].items()) or "none"
        summary.append(
            f"Protocol leave-source-out: of {held['holdout_images']} images of "
            f"{held['holdout_source']}, {held['removed_with_copy_in_training_sources']} have a "
            f"copy in {', '.join(held['training_sources'])} and are removed; "
            f"{held['test_left']} are left for the test ({left})."
        )
    shortcut_class = "warn" if shortcut["shortcut"] else "ok"
    appearance = figures.get("appearance_shortcut")
    appearance_line = ""
    if appearance:
        appearance_class = "warn" if appearance["shortcut"] else "ok"
        appearance_line = f'<p class="{appearance_class}">{_e(appearance["summary"])}</p>'

    protocol_tables = "".join(
        f"<h3>{_e(name)}</h3>" + _nested_table(info["kept_by_split_class"], "split")
        for name, info in protocols.items()
    )
    official_table = ""
    if official:
        official_table = table(
            [
                ["Testing images", official["testing_images"]],
                [
                    "removed: same picture as a Training image",
                    official["removed_with_training_twin"],
                ],
                [
                    "removed: duplicate within Testing",
                    official["removed_as_duplicates_within_testing"],
                ],
                ["quarantined (label conflicts)", official["quarantined"]],
                ["left for the test", official["test_left"]],
            ],
            ["official protocol", "images"],
        )
    scope_rows = [
        [
            name,
            s["images"],
            s["balanced_accuracy"],
            s["chance"],
            s["notumor_vs_tumour"],
            "yes" if s["shortcut"] else "no",
        ]
        for name, s in shortcut["scopes"].items()
    ]
    size_rows = [
        [
            split,
            label,
            info["most_common"],
            f"{info['share']:.0%}",
            f"{info['share_dominant_size']:.0%}",
        ]
        for split, per_label in shortcut["most_common_size"].items()
        for label, info in per_label.items()
    ]
    leak_rows = [
        [label, info["testing"], info["with_training_twin"]]
        for label, info in leakage["by_class"].items()
    ]
    policy_rows = [[k, v] for k, v in figures["policy"].items()]
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")

    body = f"""<h1>Data integrity audit</h1>
<p class="meta">Data root: {_e(data_root)} &middot; generated {generated} &middot;
splits.csv written for protocol <b>{_e(figures["protocol"])}</b></p>
<ul>{"".join(f"<li>{_e(s)}</li>" for s in summary)}</ul>
<p class="{shortcut_class}">{_e(shortcut["summary"])}</p>
{appearance_line}

<h2>Images</h2>
{_nested_table(figures["images"]["by_split_class"], "source split")}

<h2>Sources</h2>
{_sources_section(images, manifest, duplicates, figures)}

<h2>Exact duplicates</h2>
{table([[k.replace("_", " "), v] for k, v in figures["exact"].items()], ["measure", "count"])}
<p>Pixel-identical means the same decoded pixels, whatever the file bytes.</p>
{examples["exact"]}

<h2>Near duplicates</h2>
<p>Candidates: pairs of distinct images whose whole-image or head-crop perceptual hashes
(mirrored or not) differ in at most {near["hamming_threshold"]} of 64 bits. Each candidate is
verified on pixels: both images are cropped to the head, aligned (affine ECC) and must reach a
correlation of {near["min_correlation"]}.</p>
{
        table(
            [
                ["candidate pairs", near["candidate_pairs"]],
                ["verified: the same picture", near["verified_pairs"]],
                ["rejected: similar hash, different picture", near["rejected_pairs"]],
                [
                    f"candidates within pHash distance {loose_key.rsplit('_', 1)[1]}",
                    loose["pairs"],
                ],
                ["... of which the same picture", loose["same_picture"]],
            ],
            ["measure", "pairs"],
        )
    }
<p>A perceptual hash alone over-merges MRI slices: most close-hash pairs are adjacent slices.
Examples of verified pairs (lowest scores first):</p>
{examples["near"]}
<p>Examples of rejected candidates (highest scores first):</p>
{examples["rejected"]}

<h2>Duplicate clusters</h2>
{
        table(
            [
                ["clusters (2 or more images)", clusters["clusters"]],
                ["images in clusters", clusters["images_in_clusters"]],
                ["redundant images", clusters["redundant_images"]],
                ["largest cluster", clusters["largest_cluster"]],
            ],
            ["measure", "count"],
        )
    }
<h3>Clusters per class</h3>
{table(sorted(clusters["clusters_by_class"].items()), ["class", "clusters"])}
<h3>Redundant images per source split and class</h3>
<p>Copies beyond the one image kept per cluster (quarantined clusters not counted).</p>
{_nested_table(clusters["redundant_by_split_class"], "source split")}

<h2>Label conflicts</h2>
<p>Clusters whose copies carry different labels are quarantined whole (policy
<code>cross_class</code>).</p>
{_conflict_examples(images, figures)}

<h2>Leakage between Training and Testing</h2>
<p>{leakage["clusters_spanning_training_and_testing"]} clusters span both source splits.</p>
{table(leak_rows, ["class", "Testing images", "with a Training twin"])}
{examples["leak"]}

<h2>Splits</h2>
<p>No cluster straddles train/val/test; one image per cluster is kept. Kept images per split
and class, for each protocol:</p>
{protocol_tables}
{official_table}

<h2>Metadata shortcut</h2>
<p>{_e(shortcut["model"])} on {_e(", ".join(shortcut["features"]))}; {
        _e(shortcut["criterion"])
    }.</p>
{
        table(
            scope_rows,
            ["scope", "images", "balanced accuracy", "chance", "no tumour vs tumour", "shortcut"],
        )
    }
{
        table(
            size_rows,
            [
                "source split",
                "class",
                "most common size",
                "share",
                f"share {shortcut['dominant_size']}",
            ],
        )
    }
<pre>{_e(shortcut["tree"])}</pre>

<h2>Appearance shortcut</h2>
{_appearance_section(images, appearance)}

<h2>Policy</h2>
{table(policy_rows, ["setting", "value"])}
<p class="meta">Timings (s): {_e(figures.get("timings", {}))}</p>"""
    return page("Data integrity audit", body)


def write_report(
    target: Path,
    data_root: Path,
    manifest: pd.DataFrame,
    duplicates: Duplicates,
    figures: dict[str, Any],
    loader: Callable[[Path], np.ndarray] = load_gray,
) -> Path:
    """Write the self-contained HTML report to `target` and return its path."""
    target = Path(target)
    target.write_text(render_report(data_root, manifest, duplicates, figures, loader), "utf-8")
    return target
