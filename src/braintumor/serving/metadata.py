"""The model card: everything the service needs to know about the model it serves.

It travels as the BentoML model's metadata (and as `card.json` next to the model file), so the
service reads class names, input size and preprocessing from the model itself, never from a
constant that could drift from what training used.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from braintumor.constants import CLASS_NAMES, TASK_FOUR_CLASS
from braintumor.guard.review import GuardCard
from braintumor.preprocessing import PreprocessSpec
from braintumor.tasks import task_class_names

STAGES = ("none", "staging", "production", "archived")


class ModelCard(BaseModel):
    """Lineage and input contract of one packaged model version.

    Attributes:
        task: What the model answers: `four_class`, or `binary` (tumour vs no tumour).
        class_names: Output order of the classifier's probabilities: the task's classes
            (given or not, they must be those of `task`).
        preprocessing: `PreprocessSpec.to_dict()` of the spec the model was trained with.
        backbone: Registry name of the network (`custom_cnn`, `efficientnetb0`, ...).
        model_version: ZenML Model Control Plane version (name or number).
        stage: Stage of that version when it was packaged.
        metrics: Test metrics (weighted F1 first of all) of that version.
        metrics_by_source: The same per data source of the test images (`source` in the
            manifest), next to the pooled ones; empty when the test images had no source.
        protocol: Evaluation protocol the metrics come from (`resplit` or `official`).
        data_hash: DVC hash of the training data.
        git_commit: Commit of the code that trained the model.
        temperature: Temperature T fitted on validation data (the pipeline's calibrate_winner
            step); the serving graph divides the logits by it, so the probabilities it returns
            are calibrated. 1.0 leaves the model's output unchanged.
        class_offsets: Per-class logit offsets b fitted together with T (`refit_class_bias`),
            for the record: T·b is already in the model's softmax bias, so nothing applies
            them again. None: only T was fitted.
        review_threshold: Default `needs_review` threshold for this model (the service's
            configuration may override it).
        runtime_checks: How the shipped ONNX runtimes compared with Keras at packaging
            (`optimize.RuntimeCheck.to_dict()` per runtime), filled by `package_model`.
        guard: The OOD detector's thresholds, the conformal thresholds and their measured
            validation rates (`braintumor.guard`); None for a model packaged without one.
        created: When the card was written (UTC).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: Literal["four_class", "binary"] = TASK_FOUR_CLASS
    class_names: tuple[str, ...] = CLASS_NAMES
    preprocessing: dict[str, Any]
    backbone: str
    model_version: str
    stage: str = "none"
    metrics: dict[str, float] = Field(default_factory=dict)
    metrics_by_source: dict[str, dict[str, float]] = Field(default_factory=dict)
    protocol: str | None = None
    data_hash: str | None = None
    git_commit: str | None = None
    temperature: float = 1.0
    class_offsets: tuple[float, ...] | None = None
    review_threshold: float | None = None
    runtime_checks: dict[str, dict[str, Any]] = Field(default_factory=dict)
    guard: GuardCard | None = None
    created: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @field_validator("class_names")
    @classmethod
    def _distinct_classes(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        if len(names) < 2 or len(set(names)) != len(names):
            raise ValueError(f"class_names must hold at least two distinct names, not {names}")
        return names

    @field_validator("preprocessing")
    @classmethod
    def _valid_spec(cls, values: dict[str, Any]) -> dict[str, Any]:
        return PreprocessSpec.from_dict(values).to_dict()  # raises on unknown or bad values

    @field_validator("stage")
    @classmethod
    def _known_stage(cls, stage: str) -> str:
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, not {stage!r}")
        return stage

    @field_validator("metrics")
    @classmethod
    def _finite_metrics(cls, metrics: dict[str, float]) -> dict[str, float]:
        bad = [name for name, value in metrics.items() if not math.isfinite(value)]
        if bad:
            raise ValueError(f"metrics must be finite numbers; not finite: {bad}")
        return metrics

    @field_validator("metrics_by_source")
    @classmethod
    def _finite_source_metrics(
        cls, by_source: dict[str, dict[str, float]]
    ) -> dict[str, dict[str, float]]:
        for metrics in by_source.values():
            cls._finite_metrics(metrics)
        return by_source

    @field_validator("temperature")
    @classmethod
    def _positive_temperature(cls, value: float) -> float:
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"temperature must be a positive number, not {value}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _classes_of_the_task(cls, data: Any) -> Any:
        if isinstance(data, dict) and "class_names" not in data and "task" in data:
            return {**data, "class_names": task_class_names(data["task"])}
        return data

    @model_validator(mode="after")
    def _task_matches_classes(self) -> ModelCard:
        expected = task_class_names(self.task)
        if tuple(self.class_names) != expected:
            raise ValueError(
                f"a {self.task} model's class_names are {list(expected)}, not "
                f"{list(self.class_names)}"
            )
        return self

    @model_validator(mode="after")
    def _threshold_in_range(self) -> ModelCard:
        if self.review_threshold is not None:
            check_review_threshold(self.review_threshold, len(self.class_names))
        return self

    @property
    def spec(self) -> PreprocessSpec:
        return PreprocessSpec.from_dict(dict(self.preprocessing))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.spec.input_shape

    def to_metadata(self) -> dict[str, Any]:
        """A dict of plain JSON types (no None: BentoML metadata refuses it)."""
        return self.model_dump(mode="json", exclude_none=True)

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> ModelCard:
        """Read a card back from BentoML model metadata (or `card.json`)."""
        return cls.model_validate(dict(metadata))


def check_review_threshold(threshold: float, n_classes: int) -> float:
    """A top probability is never below 1/n_classes, so a threshold there would never fire."""
    if not (1.0 / n_classes <= threshold <= 1.0):
        raise ValueError(
            f"review threshold must be between 1/{n_classes} = {1.0 / n_classes:.3f} and 1.0, "
            f"not {threshold}"
        )
    return threshold
