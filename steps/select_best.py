"""Step: the leaderboard of this run's backbones, the winner by validation weighted F1, and
the winner's trained model and training config (what the steps after it run with)."""

from __future__ import annotations

from typing import Annotated

import keras
from zenml import log_metadata, step
from zenml.artifacts.artifact_config import ArtifactConfig
from zenml.enums import ArtifactType

from braintumor.constants import (
    ARTIFACT_LEADERBOARD,
    ARTIFACT_WINNER,
    ARTIFACT_WINNER_CONFIG,
    ARTIFACT_WINNER_MODEL,
)
from braintumor.evaluation.leaderboard import choose_winner, leaderboard_row
from braintumor.training.config import TrainingConfig


@step
def select_best(
    val_metrics: list[dict],
    trainings: list[dict],
    models: list[keras.Model],
    configs: dict[str, TrainingConfig],
) -> tuple[
    Annotated[list[dict], ARTIFACT_LEADERBOARD],
    Annotated[str, ARTIFACT_WINNER],
    Annotated[
        keras.Model, ArtifactConfig(name=ARTIFACT_WINNER_MODEL, artifact_type=ArtifactType.MODEL)
    ],
    Annotated[TrainingConfig, ARTIFACT_WINNER_CONFIG],
]:
    """Reads the outputs of *this* run (passed in, `models` in the order of `trainings`),
    never "the latest artifact" by name."""
    by_backbone = {t["backbone"]: t for t in trainings}
    rows = [leaderboard_row(m["backbone"], m, by_backbone[m["backbone"]]) for m in val_metrics]
    rows.sort(key=lambda r: r["val_weighted_f1"], reverse=True)
    winner = choose_winner(rows)
    model = models[[t["backbone"] for t in trainings].index(winner)]
    log_metadata(metadata={"winner": winner, "leaderboard": rows})
    return rows, winner, model, configs[winner]
