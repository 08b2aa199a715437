"""The rule that turns a model's answer into `needs_review` and its reasons (pure), and the
guard's part of the model card.

An answer needs review when any of these holds (`REASONS`, in this order):
- `low_confidence`: the top calibrated probability is below the review threshold;
- `ambiguous`: the conformal prediction set does not hold exactly one class (several are
  plausible, or, for an empty set, none is);
- `out_of_distribution`: the OOD score is above the threshold fitted on validation images;
- `not_brain_mri`: a check before the model failed (`input_checks`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

LOW_CONFIDENCE = "low_confidence"
AMBIGUOUS = "ambiguous"
OUT_OF_DISTRIBUTION = "out_of_distribution"
NOT_BRAIN_MRI = "not_brain_mri"
REASONS = (LOW_CONFIDENCE, AMBIGUOUS, OUT_OF_DISTRIBUTION, NOT_BRAIN_MRI)
ANY = "any"


class GuardCard(BaseModel):
    """What a model version's guard was fitted to, stored in its model card.

    The detector's arrays are a file next to the model (`OOD_FILE`); these are its
    thresholds and what they cost on the validation split.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    detector: str
    ood_threshold: float
    false_review_rate: float = Field(description="target share of validation images flagged OOD")
    conformal_error_rate: float
    conformal_thresholds: tuple[float, ...] = Field(
        description="per class: largest 1 - p that keeps the class in the prediction set"
    )
    knn_k: int | None = None
    review_threshold: float = Field(description="low-confidence threshold the rates assume")
    validation_images: int
    validation_rates: dict[str, float] = Field(
        default_factory=dict,
        description="share of validation images flagged by each reason, and by any",
    )
    validation_set_coverage: dict[str, float] = Field(
        default_factory=dict, description="per class: share of its images whose set holds it"
    )


def flag_reasons(
    confidence: np.ndarray,
    set_sizes: np.ndarray,
    ood_scores: np.ndarray,
    input_failed: np.ndarray,
    review_threshold: float,
    ood_threshold: float,
) -> dict[str, np.ndarray]:
    """Boolean arrays, one per reason (and `any`), for a batch of answers."""
    flags = {
        LOW_CONFIDENCE: np.asarray(confidence) < review_threshold,
        AMBIGUOUS: np.asarray(set_sizes) != 1,
        OUT_OF_DISTRIBUTION: np.asarray(ood_scores) > ood_threshold,
        NOT_BRAIN_MRI: np.asarray(input_failed, dtype=bool),
    }
    flags[ANY] = np.logical_or.reduce([flags[reason] for reason in REASONS])
    return flags


def reasons_of(flags: dict[str, np.ndarray], index: int) -> list[str]:
    """The reasons that hold for answer `index` of a batch, in `REASONS` order."""
    return [reason for reason in REASONS if bool(flags[reason][index])]


def flag_rates(flags: dict[str, np.ndarray]) -> dict[str, float]:
    return {name: round(float(np.mean(values)), 4) for name, values in flags.items()}


def set_labels(in_set: Sequence[bool], class_names: Sequence[str]) -> list[str]:
    return [name for name, kept in zip(class_names, in_set, strict=True) if kept]
