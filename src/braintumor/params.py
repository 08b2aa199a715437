"""`params.yaml`: the data-stage parameters DVC tracks and the promotion policy (one source
of truth for each).

Validated once here; the DVC CLAHE stage, the audit, the ZenML pipeline and `braintumor
promote` all read it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from braintumor.preprocessing import PreprocessSpec
from braintumor.promotion import PromotionPolicy

DEFAULT_PARAMS_FILE = Path("params.yaml")


class ClaheParams(BaseModel):
    """params.yaml `clahe:`, declared there only (no defaults here).

    `clip_limit` and `tile_grid` are CLAHE's settings wherever it runs: the training pipeline
    hands them to every backbone's `clahe` variant (`RunConfig.training_config`) and the DVC
    stage uses them. `image_size` and `grayscale` are the stage's own: the size and channels
    of the images it exports to data/clahe. Values are checked by `PreprocessSpec`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    clip_limit: float
    tile_grid: int
    image_size: int
    grayscale: bool

    @model_validator(mode="after")
    def _valid_spec(self) -> ClaheParams:
        self.spec()
        return self

    def spec(self) -> PreprocessSpec:
        """The DVC stage's preprocessing."""
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
    try:
        return ClaheParams(**(load_params(path).get("clahe") or {}))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"{path} `clahe:`: {problems}") from None


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
