"""`TrainingConfig`: everything one training run needs, validated once at the edge.

The ZenML pipeline passes one of these per backbone from a YAML run config; the benchmark
and tests build them from dicts. Inside the library the plain specs it holds or produces
(`PreprocessSpec`, `HeadSpec`, `CnnSpec`, `AugmentSpec`) are what functions take.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_serializer,
    model_validator,
)

from braintumor.constants import TASK_FOUR_CLASS
from braintumor.models.specs import BACKBONE_INFO, IMAGENET, CnnSpec, HeadSpec
from braintumor.preprocessing import PreprocessSpec
from braintumor.tasks import task_class_names
from braintumor.training.augment_spec import AugmentSpec


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HeadConfig(_Strict):
    pooling: Literal["avg", "max", "flatten"] = "avg"
    dropout: float = Field(0.3, ge=0, lt=1)
    dense_units: int = Field(0, ge=0)

    def spec(self) -> HeadSpec:
        return HeadSpec(**self.model_dump())


class CnnConfig(_Strict):
    """The from-scratch `custom_cnn` (ignored by the other backbones)."""

    filters: tuple[int, ...] = (32, 64, 128, 256)
    convs_per_block: int | tuple[int, ...] = 2  # one number, or one per block
    block_dropout: float = Field(0.1, ge=0, lt=1)
    batch_norm_momentum: float = Field(0.9, gt=0, lt=1)
    input_normalization: Literal["unit", "standardize"] = "unit"

    def spec(self) -> CnnSpec:
        return CnnSpec(**self.model_dump())


class FineTuneConfig(_Strict):
    """Phase two for pretrained weights: unfreeze the top of the base at a lower rate."""

    epochs: int = Field(10, ge=0)
    unfreeze_top_layers: int | None = Field(30, ge=0)  # None: the whole base
    learning_rate: float = Field(1e-5, gt=0)


class FocalConfig(_Strict):
    enabled: bool = False
    gamma: float = Field(2.0, ge=0)
    alpha: float | tuple[float, ...] = 0.25


class BalancingConfig(_Strict):
    """How the training split's class imbalance is handled (focal combines with any)."""

    strategy: Literal["class_weight", "oversample", "smote", "none"] = "class_weight"
    # oversample/smote: grow every smaller class to this fraction of the largest class.
    target_ratio: float = Field(1.0, gt=0, le=1)
    smote_neighbors: int = Field(5, ge=1)
    smote_image_size: int = Field(32, ge=8)  # neighbours are searched on pixels this small
    # Weight images so that classes are balanced within each appearance group (the audit's
    # sequence-type proxy, `integrity.appearance.sequence_group`, computed on the training
    # images as loaded): no group (nearly) single-class in any epoch. class_weight only.
    appearance_groups: bool = False
    group_max_weight: float = Field(10.0, ge=1)
    focal: FocalConfig = FocalConfig()

    @model_validator(mode="after")
    def _groups_need_class_weight(self) -> BalancingConfig:
        if self.appearance_groups and self.strategy != "class_weight":
            raise ValueError("balancing.appearance_groups works with strategy class_weight only")
        return self

    @model_serializer(mode="wrap")
    def _without_off_groups(self, handler):
        return _drop_while_off(handler(self), self.appearance_groups, _GROUP_KEYS)


# Options added after the profiles' models were trained: while they are off they are left
# out of the dumped config, so the train step's parameters (its ZenML cache key) and the
# recorded training configs stay those of a config without them.
_GROUP_KEYS = ("appearance_groups", "group_max_weight")
_APPEARANCE_KEYS = (
    "intensity_curve_head_only",
    "head_threshold",
    "invert_probability",
    "histogram_match_probability",
    "bias_field_probability",
    "bias_field_order",
    "bias_field_coefficients",
)


def _drop_while_off(values: dict[str, Any], on: bool, keys: tuple[str, ...]) -> dict[str, Any]:
    return values if on else {k: v for k, v in values.items() if k not in keys}


class AugmentationConfig(_Strict):
    """Training-only augmentation; see `braintumor.training.augment_spec.AugmentSpec`.

    Appearance invariance against the sequence shortcut (issue 15), all off by default and
    all acting inside the head only (the filled region of pixels above `head_threshold`), so
    the black background stays black:

    - `intensity_curve_head_only`: the random intensity curve (`intensity_curve_probability`,
      possibly non-monotonic) acts inside the head only, and black tissue may turn bright.
    - `invert_probability`: invert the head's contrast (T1-like to T2-like).
    - `histogram_match_probability`: match the head histogram to that of another image of
      the batch, of another class when the batch has one.
    - `bias_field_probability`: multiply the head by a smooth field exp(polynomial of order
      `bias_field_order`, coefficients uniform in [-bias_field_coefficients, +...]).

    Per-image standardisation is model input normalisation, not augmentation:
    `cnn.input_normalization: standardize` (the `custom_cnn`; pretrained backbones keep the
    normalisation their weights expect).
    """

    enabled: bool = True
    flip_horizontal: bool = True
    flip_vertical: bool = False
    rotation_degrees: float = Field(10.0, ge=0, le=180)
    zoom: float = Field(0.1, ge=0, lt=1)
    translate: float = Field(0.05, ge=0, lt=0.5)
    brightness: float = Field(0.1, ge=0, le=1)
    contrast: float = Field(0.1, ge=0, lt=1)
    gamma: float = Field(0.0, ge=0, le=1)
    blur_probability: float = Field(0.0, ge=0, le=1)
    blur_sigma: float = Field(1.5, gt=0)
    noise_std: float = Field(0.0, ge=0, le=0.5)
    resolution_probability: float = Field(0.0, ge=0, le=1)
    resolution_min_scale: float = Field(0.35, gt=0, le=1)
    intensity_curve_probability: float = Field(0.0, ge=0, le=1)
    intensity_curve_points: int = Field(5, ge=2, le=64)
    intensity_curve_head_only: bool = False
    head_threshold: float = Field(20.0, ge=0, lt=255)
    invert_probability: float = Field(0.0, ge=0, le=1)
    histogram_match_probability: float = Field(0.0, ge=0, le=1)
    bias_field_probability: float = Field(0.0, ge=0, le=1)
    bias_field_order: int = Field(3, ge=1, le=6)
    bias_field_coefficients: float = Field(0.3, gt=0, le=2)

    @property
    def appearance_on(self) -> bool:
        return bool(
            self.intensity_curve_head_only
            or self.invert_probability
            or self.histogram_match_probability
            or self.bias_field_probability
        )

    @model_serializer(mode="wrap")
    def _without_off_appearance(self, handler):
        return _drop_while_off(handler(self), self.appearance_on, _APPEARANCE_KEYS)

    def spec(self) -> AugmentSpec | None:
        if not self.enabled:
            return None
        values = self.model_dump()
        values.pop("enabled")
        return AugmentSpec(**values)


class EarlyStoppingConfig(_Strict):
    patience: int = Field(6, ge=0)  # 0: off (train every epoch; the best epoch is still kept)
    min_delta: float = Field(0.0, ge=0)


class ScheduleConfig(_Strict):
    """The learning-rate schedule of each phase.

    `plateau`: the configured rate, halved when validation loss stalls (`reduce_lr`).
    `onecycle`: warm up from rate/25 to the configured rate over `warmup_fraction` of the
    phase's steps, then cosine-anneal to ~0 (Smith's one-cycle policy). It needs the whole
    phase: combine it with early stopping off (`patience: 0`).
    """

    kind: Literal["plateau", "onecycle"] = "plateau"
    warmup_fraction: float = Field(0.3, gt=0, lt=1)


class ReduceLRConfig(_Strict):
    factor: float = Field(0.5, gt=0, lt=1)
    patience: int = Field(3, ge=1)
    min_lr: float = Field(1e-6, ge=0)


class TrainingConfig(_Strict):
    """One training run of one backbone."""

    # What the model answers: the four classes, or tumour vs no tumour (binary: the splits'
    # four labels are mapped by braintumor.tasks; the splits themselves are unchanged).
    task: Literal["four_class", "binary"] = TASK_FOUR_CLASS
    backbone: str = "custom_cnn"
    weights: str | None = None  # "imagenet", null, or the path of a base weights file
    preprocessing: PreprocessSpec = PreprocessSpec()
    head: HeadConfig = HeadConfig()
    cnn: CnnConfig = CnnConfig()
    batch_size: int = Field(32, ge=1)
    epochs: int = Field(30, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    weight_decay: float = Field(0.0, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    # > 0: validate, keep and return an exponential moving average of the weights, updated
    # every step with this decay (0.998: a half-life of about 350 steps); 0: off.
    ema_decay: float = Field(0.0, ge=0, lt=1)
    # The calibration after training (models.calibrated.calibrate_model; the pipeline's
    # calibrate_winner step) fits per-class logit offsets together with the temperature on
    # the validation split and adds them to the softmax bias (evaluation.calibration.
    # fit_class_bias), undoing a systematic lean towards some classes; off: the temperature
    # alone. Falls back to it, with a warning, when a class has fewer than 10 validation
    # images. Training itself does not read it.
    refit_class_bias: bool = False
    fine_tune: FineTuneConfig = FineTuneConfig()
    balancing: BalancingConfig = BalancingConfig()
    augmentation: AugmentationConfig = AugmentationConfig()
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    reduce_lr: ReduceLRConfig = ReduceLRConfig()
    lr_schedule: ScheduleConfig = ScheduleConfig()
    seed: int = 42
    deterministic: bool = False  # TF op determinism: reproducible to the bit, slower
    # auto: float16 compute when a GPU is present; bfloat16: bfloat16 compute on GPUs and on
    # CPUs with native bf16 (AVX512_BF16/AMX; 1.4x faster training measured on a 2-core
    # EPYC), float32 on other CPUs, where emulated bf16 would be slower. Training only: the
    # trained model is handed on (evaluated, exported, served) in float32.
    mixed_precision: Literal["auto", "on", "off", "bfloat16"] = "auto"
    distribute: Literal["auto", "off"] = "auto"  # auto: MirroredStrategy over >1 GPU
    jit_compile: bool = False  # XLA; compiling costs minutes on CPU, can pay off on GPU

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, value: str) -> str:
        if value not in BACKBONE_INFO:
            raise ValueError(f"unknown backbone {value!r}; choose one of {sorted(BACKBONE_INFO)}")
        return value

    @field_validator("weights", mode="before")
    @classmethod
    def _weights(cls, value: Any) -> str | None:
        if value is None or (isinstance(value, str) and value.lower() in ("", "null", "none")):
            return None
        if isinstance(value, Path):
            return str(value)
        if not isinstance(value, str):
            raise ValueError("weights must be 'imagenet', null or a path to a weights file")
        return IMAGENET if value.lower() == IMAGENET else value

    @model_validator(mode="after")
    def _consistent(self) -> TrainingConfig:
        entry = BACKBONE_INFO[self.backbone]
        if self.weights == IMAGENET and not entry.pretrained:
            raise ValueError(f"{self.backbone} has no ImageNet weights: use weights null or a path")
        if self.preprocessing.image_size < entry.min_size:
            raise ValueError(
                f"{self.backbone} needs preprocessing.image_size >= {entry.min_size}, "
                f"not {self.preprocessing.image_size}"
            )
        if self.weights not in (None, IMAGENET) and not Path(self.weights).expanduser().is_file():
            raise ValueError(f"weights file {self.weights} not found")
        return self

    @model_serializer(mode="wrap")
    def _without_default_task(self, handler):
        # Added after the profiles' models were trained: the four-class default stays out of
        # the dump, so those configs (and their train steps' cache keys) are unchanged.
        return _drop_while_off(handler(self), self.task != TASK_FOUR_CLASS, ("task",))

    @property
    def class_names(self) -> tuple[str, ...]:
        """The model's softmax order: the four classes, or (notumor, tumour)."""
        return task_class_names(self.task)

    @property
    def pretrained(self) -> bool:
        """True when training starts from weights: two phases (frozen base, then fine-tune)."""
        return self.weights is not None

    def input_shape(self) -> tuple[int, int, int]:
        return self.preprocessing.input_shape
