"""What a model is made of, as plain data: the head, the from-scratch CNN and the backbone
registry's facts (input sizes, normalisation, ImageNet weights). No Keras here, so the run
config can be validated without importing TensorFlow; `models.backbones` builds from these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Pooling = Literal["avg", "max", "flatten"]
IMAGENET = "imagenet"


@dataclass(frozen=True)
class HeadSpec:
    """The classification head on top of the pooled features."""

    pooling: Pooling = "avg"  # "flatten" keeps where features are (the research CNN's head)
    dropout: float = 0.3
    dense_units: int = 0  # 0: no hidden dense layer, straight to the softmax

    def __post_init__(self) -> None:
        if self.pooling not in ("avg", "max", "flatten"):
            raise ValueError(f"head pooling must be avg, max or flatten, not {self.pooling!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"head dropout must be in [0, 1), not {self.dropout}")
        if self.dense_units < 0:
            raise ValueError(f"head dense_units must be >= 0, not {self.dense_units}")


@dataclass(frozen=True)
class CnnSpec:
    """The from-scratch network of the research: conv blocks of growing width."""

    filters: tuple[int, ...] = (32, 64, 128, 256)
    convs_per_block: int | tuple[int, ...] = 2  # one number for all blocks, or one per block
    block_dropout: float = 0.1
    # Also applied to any backbone trained from scratch (weights null). Keras defaults to
    # 0.99: on a few thousand images the moving variance then needs ~10 epochs to leave its
    # initial 1.0, and validation collapses to one class until it does.
    batch_norm_momentum: float = 0.9
    input_normalization: str = "unit"  # or "standardize": per-image mean/std (see layers)

    def __post_init__(self) -> None:
        if not self.filters or any(f < 1 for f in self.filters):
            raise ValueError(f"cnn filters must be positive integers, not {self.filters}")
        counts = self.block_convs
        if len(counts) != len(self.filters) or min(counts) < 1:
            raise ValueError(
                f"cnn convs_per_block must be >= 1, one number or one per block "
                f"({len(self.filters)} blocks), not {self.convs_per_block}"
            )
        if not 0.0 <= self.block_dropout < 1.0:
            raise ValueError(f"cnn block_dropout must be in [0, 1), not {self.block_dropout}")
        if self.input_normalization not in ("unit", "standardize"):
            raise ValueError(
                f"cnn input_normalization must be 'unit' or 'standardize', "
                f"not {self.input_normalization!r}"
            )
        if not 0.0 < self.batch_norm_momentum < 1.0:
            raise ValueError(
                f"cnn batch_norm_momentum must be in (0, 1), not {self.batch_norm_momentum}"
            )

    @property
    def block_convs(self) -> tuple[int, ...]:
        if isinstance(self.convs_per_block, int):
            return (self.convs_per_block,) * len(self.filters)
        return tuple(self.convs_per_block)


@dataclass(frozen=True)
class BackboneInfo:
    """One backbone's facts (the registry in `models.backbones` adds how to build it)."""

    name: str
    input_size: int  # the size it was designed (and ImageNet-trained) for
    min_size: int
    normalization: str  # a BackboneNormalization mode
    pretrained: bool  # ImageNet weights exist

    @property
    def needs_rgb(self) -> bool:
        return self.pretrained


BACKBONE_INFO: dict[str, BackboneInfo] = {
    info.name: info
    for info in (
        BackboneInfo(
            name="vgg16", input_size=224, min_size=32, normalization="caffe", pretrained=True
        ),
        BackboneInfo(
            name="resnet50", input_size=224, min_size=32, normalization="caffe", pretrained=True
        ),
        BackboneInfo(
            name="inceptionv3", input_size=299, min_size=75, normalization="tf", pretrained=True
        ),
        BackboneInfo(
            name="efficientnetb0",
            input_size=224,
            min_size=32,
            normalization="none",
            pretrained=True,
        ),
        BackboneInfo(
            name="densenet121", input_size=224, min_size=32, normalization="torch", pretrained=True
        ),
        BackboneInfo(
            name="mobilenetv2", input_size=224, min_size=32, normalization="tf", pretrained=True
        ),
        BackboneInfo(
            name="custom_cnn", input_size=128, min_size=16, normalization="unit", pretrained=False
        ),
    )
}
