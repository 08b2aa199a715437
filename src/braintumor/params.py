"""`params.yaml`: the data-stage parameters DVC tracks and the promotion policy (one source
of truth for each).

Validated once here; the DVC CLAHE stage, the audit, the ZenML pipeline and `braintumor
promote` all read it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from braintumor.preprocessing import PreprocessSpec
from braintumor.promotion import PromotionPolicy

DEFAULT_PARAMS_FILE = Path("params.yaml")


class ClaheParams(BaseModel):
    """The CLAHE stage: contrast limited adaptive histogram equalisation of data/raw."""

    model_config = ConfigDict(extra="forbid")

    clip_limit: float = Field(2.0, gt=0)
    tile_grid: int = Field(8, ge=1)
    image_size: int = Field(256, ge=16)
    grayscale: bool = True

    def spec(self) -> PreprocessSpec:
        return PreprocessSpec(
            image_size=self.image_size,
            channels=1 if self.grayscale else 3,
            variant="clahe",
            clahe_clip_limit=self.clip_limit,
            clahe_tile_grid=self.tile_grid,
        )


def load_params(path: Path | str = DEFAULT_PARAMS_FILE) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run from the project root or pass --params")
    return yaml.safe_load(path.read_text()) or {}


def clahe_params(path: Path | str = DEFAULT_PARAMS_FILE) -> ClaheParams:
    return ClaheParams(**load_params(path).get("clahe", {}))


def promotion_policy(path: Path | str = DEFAULT_PARAMS_FILE) -> PromotionPolicy:
    """The repository's promotion policy (`gate:`); every move to production is checked
    against it."""
    gate = load_params(path).get("gate")
    if not gate:
        raise ValueError(f"{path} has no `gate:` section: the promotion policy lives there")
    try:
        return PromotionPolicy(**gate)
    except ValueError as exc:
        raise ValueError(f"{path} `gate:`: {exc}") from None
