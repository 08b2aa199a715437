"""Step: the leaderboard of this run's backbones and the winner by validation weighted F1."""

from __future__ import annotations

from typing import Annotated

from zenml import log_metadata, step

from braintumor.evaluation.leaderboard import choose_winner, leaderboard_row


@step
def select_best(
    val_metrics: list[dict], trainings: list[dict]
) -> tuple[Annotated[list[dict], "leaderboard"], Annotated[str, "winner"]]:
    """Reads the outputs of *this* run (passed in), never "the latest artifact" by name."""
    by_backbone = {t["backbone"]: t for t in trainings}
    rows = [leaderboard_row(m["backbone"], m, by_backbone[m["backbone"]]) for m in val_metrics]
    rows.sort(key=lambda r: r["val_weighted_f1"], reverse=True)
    winner = choose_winner(rows)
    log_metadata(metadata={"winner": winner, "leaderboard": rows})
    return rows, winner
