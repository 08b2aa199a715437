"""Step: check and record how each backbone's training split will be balanced."""

from __future__ import annotations

from typing import Annotated

import pandas as pd
from zenml import log_metadata, step

from braintumor.constants import ARTIFACT_CLASS_BALANCE, TRAIN
from braintumor.training.balancing import describe_plan
from braintumor.training.config import TrainingConfig
from braintumor.training.dataset import label_indices, select_split


@step
def plan_balance(
    splits: pd.DataFrame, trainings: dict[str, TrainingConfig]
) -> Annotated[dict, ARTIFACT_CLASS_BALANCE]:
    """Per backbone: class counts before/after its strategy and the loss weights.

    Fails the run early when a strategy cannot work on this split.
    """
    labels = select_split(splits, TRAIN)["label"].tolist()
    plans = {}
    for backbone, training in trainings.items():
        balancing = training.balancing
        plans[backbone] = describe_plan(
            label_indices(labels, training.class_names),
            training.class_names,
            balancing.strategy,
            balancing.target_ratio,
        )
        plans[backbone]["focal_loss"] = (
            balancing.focal.model_dump() if balancing.focal.enabled else None
        )
    log_metadata(metadata={"class_balance": plans})
    return plans
