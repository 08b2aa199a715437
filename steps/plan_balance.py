"""Step: check and record how each backbone's training split will be balanced."""

from __future__ import annotations

from typing import Annotated, Any

import pandas as pd
from zenml import log_metadata, step

from braintumor.constants import CLASS_NAMES, TRAIN
from braintumor.run_config import RunConfig
from braintumor.training.balancing import describe_plan
from braintumor.training.dataset import label_indices, select_split


@step
def plan_balance(splits: pd.DataFrame, run: dict[str, Any]) -> Annotated[dict, "class_balance"]:
    """Per backbone: class counts before/after its strategy and the loss weights.

    Fails the run early when a strategy cannot work on this split.
    """
    config = RunConfig(**run)
    labels = label_indices(select_split(splits, TRAIN)["label"].tolist())
    plans = {}
    for backbone in config.backbones:
        balancing = config.training_config(backbone).balancing
        plans[backbone] = describe_plan(
            labels, CLASS_NAMES, balancing.strategy, balancing.target_ratio
        )
        plans[backbone]["focal_loss"] = (
            balancing.focal.model_dump() if balancing.focal.enabled else None
        )
    log_metadata(metadata={"class_balance": plans})
    return plans
