"""The run report: one self-contained HTML file (inline CSS and images, opens offline) with
the leaderboard, the winner's plots, a Grad-CAM gallery, the data audit and the gate decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from braintumor.constants import TASK_FOUR_CLASS
from braintumor.htmlkit import data_uri, escape, image, page, table


@dataclass
class GalleryItem:
    """One test image with the winner's prediction and Grad-CAM overlay (PNG bytes)."""

    true_label: str
    predicted: str
    confidence: float
    image_png: bytes
    overlay_png: bytes

    @property
    def correct(self) -> bool:
        return self.true_label == self.predicted


@dataclass
class RunReport:
    """Everything the report shows; plain values so it is easy to build and to test."""

    title: str
    protocol: str
    preprocessing: str
    data_hash: str
    git_commit: str
    leaderboard: list[dict[str, Any]]  # one row per backbone (see LEADERBOARD_COLUMNS)
    winner: str
    test_metrics: dict[str, Any]
    decision: dict[str, Any]
    plots: dict[str, bytes] = field(default_factory=dict)  # caption -> PNG
    gallery: list[GalleryItem] = field(default_factory=list)
    audit: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


LEADERBOARD_COLUMNS: list[tuple[str, str]] = [
    ("backbone", "backbone"),
    ("val_weighted_f1", "val weighted F1"),
    ("val_weighted_f1_ci", "95% CI"),
    ("val_min_recall", "min class recall"),
    ("params", "parameters"),
    ("train_seconds", "training (s)"),
    ("model_mb", "size (MB)"),
    ("latency_ms", "latency (ms/image)"),
]


def _png(data: bytes, alt: str) -> str:
    return image(data_uri(data), alt)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if value < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list | tuple) and len(value) == 2:
        return f"[{value[0]:.4f}, {value[1]:.4f}]"
    return str(value)


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str]], highlight: str = "") -> str:
    key = columns[0][0]
    return table(
        [[_cell(row.get(name, "")) for name, _ in columns] for row in rows],
        header=[label for _, label in columns],
        row_classes=["winner" if highlight and row.get(key) == highlight else "" for row in rows],
    )


def _decision_html(decision: dict[str, Any]) -> str:
    if not decision:
        return "<p>No gate decision was made.</p>"
    verdict = (
        f'<span class="pass">PROMOTED to {escape(str(decision.get("target_stage")))}</span>'
        if decision.get("passed")
        else '<span class="fail">REJECTED</span>: production is unchanged'
    )
    checks = "".join(
        f'<li class="{"pass" if c["passed"] else "fail"}">{"✔" if c["passed"] else "✘"} '
        f"<span style='color:#1b1b1b;font-weight:400'>{escape(c['detail'])}</span></li>"
        for c in decision.get("checks", [])
    )
    return f"<p>{verdict}</p><ul>{checks}</ul>"


def _metrics_html(metrics: dict[str, Any]) -> str:
    headline = [
        ("weighted F1", metrics.get("weighted_f1")),
        ("95% CI", metrics.get("weighted_f1_ci")),
        ("macro F1", metrics.get("macro_f1")),
        ("accuracy", metrics.get("accuracy")),
        ("balanced accuracy", metrics.get("balanced_accuracy")),
        ("ROC AUC (macro, one-vs-rest)", metrics.get("roc_auc_macro")),
        ("expected calibration error", metrics.get("ece")),
        ("test images", metrics.get("n")),
    ]
    binary = metrics.get("tumour_vs_none") or {}
    headline += [  # for a four-class model: its binary view, tumour probability > 0.5
        ("tumour sensitivity (tumour vs no tumour)", binary.get("sensitivity")),
        ("tumour specificity (tumour vs no tumour)", binary.get("specificity")),
    ]
    rows = [[name, _cell(value)] for name, value in headline if value is not None]
    per_class = metrics.get("per_class", {})
    class_rows = [{"class": name, **values} for name, values in per_class.items()]
    columns = [
        ("class", "class"),
        ("precision", "precision"),
        ("recall", "recall"),
        ("f1", "F1"),
        ("support", "images"),
    ]
    html = table(rows) + (_table(class_rows, columns) if class_rows else "")
    by_source = metrics.get("by_source") or {}
    if by_source:
        source_rows = [
            {
                "source": name,
                **figures,
                "min_recall": min(
                    (c["recall"] for c in figures["per_class"].values() if c["support"]),
                    default=None,
                ),
            }
            for name, figures in by_source.items()
        ]
        source_columns = [
            ("source", "source"),
            ("n", "images"),
            ("weighted_f1", "weighted F1"),
            ("weighted_f1_ci", "95% CI"),
            ("balanced_accuracy", "balanced accuracy"),
            ("min_recall", "min recall (classes present)"),
        ]
        html += "<p>Per source (the pooled figures above cover all of them):</p>"
        html += _table(source_rows, source_columns)
    return html


def _gallery_html(items: list[GalleryItem]) -> str:
    if not items:
        return "<p>No Grad-CAM examples.</p>"
    cards = []
    for item in items:
        verdict = "correct" if item.correct else "wrong"
        cards.append(
            f'<div class="card {"" if item.correct else "wrong"}">'
            f"{_png(item.image_png, 'input')}{_png(item.overlay_png, 'Grad-CAM overlay')}"
            f"<div>true <b>{escape(item.true_label)}</b>, predicted "
            f"<b>{escape(item.predicted)}</b> ({item.confidence:.0%}): {verdict}</div></div>"
        )
    return f'<div class="gallery">{"".join(cards)}</div>'


def _audit_html(audit: dict[str, Any]) -> str:
    if not audit:
        return "<p>No audit figures.</p>"
    return table([[k, _cell(v)] for k, v in audit.items() if not isinstance(v, dict | list)])


def render_run_report(report: RunReport) -> str:
    """The whole report as one HTML string."""
    plots = "".join(
        f"<figure>{_png(png, caption)}<figcaption>{escape(caption)}</figcaption></figure>"
        for caption, png in report.plots.items()
    )
    notes = "".join(f'<p class="note">{escape(n)}</p>' for n in report.notes)
    task = report.test_metrics.get("task", TASK_FOUR_CLASS)
    classes = [str(name) for name in report.test_metrics.get("class_names", [])]
    body = f"""<h1>{escape(report.title)}</h1>
<p class="meta">task <b>{escape(str(task))}</b> ({escape(", ".join(classes))}) ·
evaluation protocol <b>{escape(report.protocol)}</b> · preprocessing
<b>{escape(report.preprocessing)}</b> · data <code>{escape(report.data_hash)}</code> · code
<code>{escape(report.git_commit)}</code></p>{notes}
<h2>Gate decision</h2>{_decision_html(report.decision)}
<h2>Leaderboard (validation split, protocol {escape(report.protocol)})</h2>
{_table(report.leaderboard, LEADERBOARD_COLUMNS, highlight=report.winner)}
<h2>Winner on the test split: {escape(report.winner)}</h2>{_metrics_html(report.test_metrics)}
<div class="plots">{plots}</div>
<h2>Grad-CAM: where the winner looks</h2>{_gallery_html(report.gallery)}
<h2>Data audit</h2>{_audit_html(report.audit)}"""
    return page(report.title, body)


def figure_png(figure: Any) -> bytes:
    """A Matplotlib figure as PNG bytes (the figure is closed)."""
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def pick_gallery(
    y_true: Any, probs: Any, correct_per_class: int, wrong_per_class: int
) -> list[int]:
    """Indices to explain: per true class, the most confident right and wrong predictions."""
    import numpy as np

    y_true, probs = np.asarray(y_true), np.asarray(probs)
    predicted, confidence = probs.argmax(axis=1), probs.max(axis=1)
    chosen: list[int] = []
    for label in np.unique(y_true):
        for wanted, count in ((True, correct_per_class), (False, wrong_per_class)):
            members = np.flatnonzero((y_true == label) & ((predicted == label) == wanted))
            ranked = members[np.argsort(-confidence[members], kind="stable")]
            chosen += ranked[:count].tolist()
    return chosen


def build_gallery(
    model: Any,
    x: Any,
    y_true: Any,
    probs: Any,
    class_names: list[str] | tuple[str, ...],
    correct_per_class: int = 2,
    wrong_per_class: int = 2,
) -> list[GalleryItem]:
    """Grad-CAM of the predicted class for the picked test images."""
    import cv2
    import numpy as np

    from braintumor.evaluation.gradcam import gradcam

    def png(rgb_or_gray: Any) -> bytes:
        array = np.asarray(rgb_or_gray)
        if array.ndim == 3 and array.shape[2] == 3:
            array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
        ok, encoded = cv2.imencode(".png", array)
        if not ok:
            raise ValueError("could not encode a gallery image")
        return encoded.tobytes()

    items = []
    for index in pick_gallery(y_true, probs, correct_per_class, wrong_per_class):
        image = np.asarray(x[index], dtype=np.float32)
        cam = gradcam(model, image)
        gray = np.clip(image.mean(axis=-1), 0, 255).astype(np.uint8)
        items.append(
            GalleryItem(
                true_label=class_names[int(y_true[index])],
                predicted=class_names[int(np.argmax(probs[index]))],
                confidence=float(np.max(probs[index])),
                image_png=png(gray),
                overlay_png=png(cam.overlay),
            )
        )
    return items
