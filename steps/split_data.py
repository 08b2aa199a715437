"""Step: the leakage-free split (no duplicate cluster straddles train/val/test)."""

from __future__ import annotations

from typing import Annotated, Any

import pandas as pd
from zenml import log_metadata, step

from braintumor.constants import ARTIFACT_SPLITS
from braintumor.integrity.policy import IntegrityPolicy
from braintumor.integrity.splits import make_splits, split_counts


@step
def split_data(
    manifest: pd.DataFrame, clusters: pd.DataFrame, integrity: dict[str, Any]
) -> Annotated[pd.DataFrame, ARTIFACT_SPLITS]:
    """`splits.csv` of the policy's protocol (`resplit` by default, `official` or
    `leave-source-out`)."""
    policy = IntegrityPolicy.from_dict(integrity)
    splits = make_splits(manifest, clusters, policy)
    counts = split_counts(splits)
    held_out = {"holdout_source": policy.holdout_source} if policy.holdout_source else {}
    log_metadata(
        metadata={
            "protocol": policy.protocol,
            **held_out,
            "split_counts": {
                str(k): {str(c): int(v) for c, v in row.items()} for k, row in counts.iterrows()
            },
            "status_counts": {str(k): int(v) for k, v in splits["status"].value_counts().items()},
        }
    )
    return splits
