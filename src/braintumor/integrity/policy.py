"""The integrity policy: thresholds and split settings, validated once from params.yaml."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from braintumor.constants import PROTOCOL_LEAVE_SOURCE_OUT, PROTOCOL_RESPLIT
from braintumor.integrity.verify import DEFAULT_MIN_CORRELATION

# Candidate pairs: perceptual hashes within this many bits (of 64). Copies made by JPEG
# re-encoding, 0.5x resizing, brightness +10 or contrast x1.2 stay within 6 bits of the
# original's whole-image hash (measured on 600 real slices). On the Kaggle set, 8 bits find
# 124 of the 126 same-picture pairs that a search at 12 bits finds, with 9.5x fewer
# candidates to verify (docs/integrity.md).
DEFAULT_HAMMING_THRESHOLD = 8


class IntegrityPolicyError(ValueError):
    """Settings in params.yaml (`integrity:`) that cannot be used; the message says which."""


class IntegrityPolicy(BaseModel):
    """How duplicates are found and what happens to them.

    Attributes:
        hamming_threshold: candidate pairs are hashes within this Hamming distance.
        min_correlation: aligned pixel correlation from which a candidate is the same picture.
        val_fraction, test_fraction: shares of each class's kept images in val and test
            (`official` draws no test split: the dataset's Testing split is the test set, and
            `val_fraction` is the share of the remaining pool).
        seed: fixes the split.
        protocol: `resplit` (grouped stratified split over all images, the default),
            `official` (the source's Testing split minus images with a twin in Training) or
            `leave-source-out` (test on the images of `holdout_source` that have no copy in
            the other sources, train and validate on the other sources).
        holdout_source: the source `leave-source-out` tests on (a manifest `source` name).
        cross_class: `quarantine` sets aside every image of a cluster that carries more than
            one label; `majority` keeps the images of the most frequent label and quarantines
            the rest (a tie quarantines the whole cluster).
        keep_one_per_cluster: within a class, keep one representative per cluster for
            training (the others are `redundant`); False keeps them all (still grouped).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    hamming_threshold: int = Field(DEFAULT_HAMMING_THRESHOLD, ge=0, le=32)
    min_correlation: float = Field(DEFAULT_MIN_CORRELATION, gt=0.0, le=1.0)
    val_fraction: float = Field(0.15, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.15, ge=0.0, lt=1.0)
    seed: int = 42
    protocol: Literal["resplit", "official", "leave-source-out"] = PROTOCOL_RESPLIT
    holdout_source: str | None = None
    cross_class: Literal["quarantine", "majority"] = "quarantine"
    keep_one_per_cluster: bool = True

    @model_validator(mode="after")
    def _holdout_with_its_protocol(self) -> IntegrityPolicy:
        if self.protocol == PROTOCOL_LEAVE_SOURCE_OUT and not self.holdout_source:
            raise ValueError(
                "protocol leave-source-out needs the source to hold out "
                "(--holdout NAME, or integrity.holdout_source)"
            )
        if self.protocol != PROTOCOL_LEAVE_SOURCE_OUT and self.holdout_source:
            raise ValueError(
                f"holdout_source {self.holdout_source!r} is only used by protocol "
                f"leave-source-out, not {self.protocol}"
            )
        return self

    @model_validator(mode="after")
    def _fractions_leave_training_data(self) -> IntegrityPolicy:
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError(
                f"val_fraction + test_fraction = {self.val_fraction + self.test_fraction:.2f} "
                "leaves less than 10% for training; lower them"
            )
        return self

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> IntegrityPolicy:
        """Build from the `integrity:` block of params.yaml (missing keys take defaults)."""
        try:
            return cls(**(values or {}))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in error['loc']) or 'integrity'}: {error['msg']}"
                for error in exc.errors()
            )
            raise IntegrityPolicyError(
                f"invalid integrity settings in params.yaml: {problems}"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


def with_protocol(
    integrity: dict[str, Any] | None, protocol: str | None, holdout: str | None
) -> dict[str, Any]:
    """params.yaml's `integrity:` block with a command line's --protocol and --holdout over it
    (a --holdout alone implies leave-source-out; another protocol drops params.yaml's
    holdout_source)."""
    values = dict(integrity or {})
    if holdout and not protocol:
        protocol = PROTOCOL_LEAVE_SOURCE_OUT
    if protocol:
        values["protocol"] = protocol
        if protocol != PROTOCOL_LEAVE_SOURCE_OUT:
            values.pop("holdout_source", None)
    if holdout:
        values["holdout_source"] = holdout
    return values
