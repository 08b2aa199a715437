"""What one training run does: which backbones, how each trains, the gate, the packaging.

It is the `parameters.run` block of a ZenML run config in `configs/`; validated once here (at
the CLI's edge and again when the pipeline is built). Data-stage settings (CLAHE parameters,
the integrity policy and protocol) and the promotion policy live in params.yaml: one source
each.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from braintumor.promotion import PolicyOverrides, Stage
from braintumor.training.config import TrainingConfig
from braintumor.tuning import TuningConfig

CLAHE_KEYS = ("clahe_clip_limit", "clahe_tile_grid")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GateConfig(_Strict):
    """What this run does with the gate's decision. The thresholds are params.yaml's `gate:`;
    `policy_overrides` changes them for this run only, and a model gated by changed
    thresholds stops at staging."""

    # Where a model that passes goes: staging, or straight to production.
    promote_to: Stage = "staging"
    # Exit code of `braintumor train` when the gate rejects the candidate (0: not an error).
    exit_code_on_reject: int = Field(0, ge=0, le=255)
    policy_overrides: PolicyOverrides = PolicyOverrides()

    @model_validator(mode="before")
    @classmethod
    def _thresholds_live_in_params(cls, data: Any) -> Any:
        if isinstance(data, dict):
            misplaced = sorted(set(data) & set(PolicyOverrides.model_fields))
            if misplaced:
                raise ValueError(
                    f"gate thresholds {misplaced} live in params.yaml `gate:`; to change them "
                    "for this profile only, put them under gate.policy_overrides"
                )
        return data


class PackageConfig(_Strict):
    """Packaging into BentoML after the gate (the serving side)."""

    enabled: bool = True
    # Package when the model reaches at least this stage in this run (staging or production).
    stage: Literal["staging", "production"] = "staging"
    build_bento: bool = True


def kubernetes_cpu(cpu_count: float) -> str:
    """A CPU count as a Kubernetes quantity: whole cores ("4") or millicores ("1500m")."""
    if float(cpu_count).is_integer():
        return str(int(cpu_count))
    return f"{round(cpu_count * 1000)}m"


class ResourceConfig(_Strict):
    """Per-training-step resources requested from the orchestrator (ignored by a local one)."""

    gpu_count: int = Field(0, ge=0)
    cpu_count: float | None = Field(None, gt=0)
    memory: str | None = Field(None, pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|K|M|G|T)?$")  # "16Gi"


class GuardConfig(_Strict):
    """Knowing when the model has no evidence (`braintumor.guard`), fitted after the winner's
    evaluation: the OOD detector on the training split, thresholds and conformal sets on the
    validation split."""

    detector: Literal["mahalanobis", "knn"] = "mahalanobis"
    knn_k: int = Field(10, ge=1)
    # Share of in-distribution (validation) images the OOD threshold may flag.
    false_review_rate: float = Field(0.05, gt=0, lt=1)
    # Conformal sets miss the true class of at most this share of each class's images.
    conformal_error_rate: float = Field(0.05, gt=0, lt=1)
    # needs_review when the top calibrated probability is below this (the service's default;
    # BRAINTUMOR_REVIEW_THRESHOLD overrides it).
    review_threshold: float = Field(0.6, gt=0, le=1)

    def settings(self):
        from braintumor.guard.fit import GuardSettings

        return GuardSettings(
            detector=self.detector,
            knn_k=self.knn_k,
            false_review_rate=self.false_review_rate,
            conformal_error_rate=self.conformal_error_rate,
        )


class ReportConfig(_Strict):
    gradcam_correct_per_class: int = Field(2, ge=0)
    gradcam_wrong_per_class: int = Field(2, ge=0)


class RunConfig(_Strict):
    backbones: list[str] = Field(min_length=1)
    training: dict[str, Any] = Field(default_factory=dict)  # TrainingConfig fields, all backbones
    overrides: dict[str, dict[str, Any]] = Field(default_factory=dict)  # per backbone
    gate: GateConfig = GateConfig()
    package: PackageConfig = PackageConfig()
    resources: ResourceConfig = ResourceConfig()
    guard: GuardConfig = GuardConfig()
    report: ReportConfig = ReportConfig()
    tuning: TuningConfig | None = None  # the search space of `braintumor tune`

    @field_validator("backbones")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"backbones listed twice: {value}")
        return value

    @model_validator(mode="after")
    def _valid_training_configs(self) -> RunConfig:
        unknown = set(self.overrides) - set(self.backbones)
        if unknown:
            raise ValueError(f"overrides for backbones that are not run: {sorted(unknown)}")
        for section in (self.training, *self.overrides.values()):
            clahe = set(section.get("preprocessing", {})) & set(CLAHE_KEYS)
            if clahe or "backbone" in section:
                raise ValueError(
                    f"set {sorted(clahe) or 'backbone'} elsewhere: CLAHE parameters come from "
                    "params.yaml (clahe:), the backbone from `backbones`"
                )
        if any("task" in section for section in self.overrides.values()):
            raise ValueError(
                "set `task` under `training` for every backbone, not per backbone in "
                "`overrides`: the backbones of one run are compared on the same classes"
            )
        for backbone in self.backbones:
            self.training_config(backbone)  # raises with the field that is wrong
        if self.tuning is not None:
            self.tuning.check(self)
        return self

    @property
    def task(self) -> str:
        """`four_class` or `binary` (`training.task`, the same for every backbone)."""
        return self.training_config(self.backbones[0]).task

    @property
    def class_names(self) -> tuple[str, ...]:
        """The softmax order of every model this run trains."""
        return self.training_config(self.backbones[0]).class_names

    def training_configs(self, clahe: dict[str, Any] | None = None) -> dict[str, TrainingConfig]:
        """Every backbone's `training_config`, in the order of `backbones`."""
        return {backbone: self.training_config(backbone, clahe) for backbone in self.backbones}

    def training_config(self, backbone: str, clahe: dict[str, Any] | None = None) -> TrainingConfig:
        """The merged TrainingConfig of one backbone (CLAHE settings from params.yaml)."""
        merged = _deep_merge(self.training, self.overrides.get(backbone, {}))
        merged["backbone"] = backbone
        if clahe:
            preprocessing = dict(merged.get("preprocessing", {}))
            preprocessing["clahe_clip_limit"] = clahe["clip_limit"]
            preprocessing["clahe_tile_grid"] = clahe["tile_grid"]
            merged["preprocessing"] = preprocessing
        return TrainingConfig(**merged)


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
