"""Comparing backbones: the leaderboard rows and the pure choice of a winner."""

from __future__ import annotations

from typing import Any


def leaderboard_row(backbone: str, val_metrics: dict[str, Any], training: dict[str, Any]) -> dict:
    """One row: validation scores plus cost (parameters, training time, size, latency)."""
    recalls = [v["recall"] for v in val_metrics["per_class"].values() if v["support"] > 0]
    return {
        "backbone": backbone,
        "val_weighted_f1": val_metrics["weighted_f1"],
        "val_weighted_f1_ci": val_metrics["weighted_f1_ci"],
        "val_macro_f1": val_metrics["macro_f1"],
        "val_min_recall": min(recalls) if recalls else 0.0,
        "params": training.get("params"),
        "train_seconds": training.get("seconds"),
        "epochs_run": training.get("epochs_run"),
        "model_mb": val_metrics.get("model_mb"),
        "latency_ms": val_metrics.get("latency_ms"),
    }


def choose_winner(rows: list[dict[str, Any]]) -> str:
    """Highest validation weighted F1; ties go to the higher minimum class recall, then to the
    smaller model (cheaper to serve)."""
    if not rows:
        raise ValueError("no backbones to choose from")
    best = max(
        rows,
        key=lambda r: (
            round(r["val_weighted_f1"], 6),
            round(r["val_min_recall"], 6),
            -(r.get("params") or 0),
        ),
    )
    return best["backbone"]
