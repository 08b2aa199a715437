"""Serving configuration, read once from the environment (all optional).

| variable | default | meaning |
|---|---|---|
| BRAINTUMOR_MODEL_TAG | brain-tumor-classifier:latest | model to serve (a Bento pins its own) |
| BRAINTUMOR_REVIEW_THRESHOLD | the card's, else 0.6 | `needs_review` when top probability < this |
| BRAINTUMOR_BACKEND | auto | auto (int8 ONNX when packaged), onnx-int8 or onnx |
| BRAINTUMOR_REJECT_NOT_MRI | false | 422 `not_a_brain_mri` for uploads failing the input checks |
| BRAINTUMOR_ONNX_THREADS | 1 | ONNX Runtime intra-op threads per worker |
| BRAINTUMOR_API_THREADS | 2 | threads per worker running the (sync) API functions |
| BRAINTUMOR_WORKERS | 2 | server worker processes |
| BRAINTUMOR_MAX_BATCH_SIZE | 32 | adaptive batching: most images per model call |
| BRAINTUMOR_MAX_LATENCY_MS | 1000 | adaptive batching: latency budget of a batch |
| BRAINTUMOR_MAX_UPLOAD_BYTES / _MAX_PIXELS / _MAX_REQUEST_BYTES | see `UploadLimits` | limits |

A Bento built by `build_bento` carries the exact model tag as a Bento argument (`bentoml build
--arg model_tag=...`), restored whenever that Bento is served: it always serves the model it
was built with, whatever "latest" is in the local model store.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from braintumor.constants import MODEL_NAME
from braintumor.serving.metadata import ModelCard, check_review_threshold
from braintumor.serving.predictor import BACKENDS
from braintumor.serving.uploads import UploadLimits

DEFAULT_MODEL_TAG = f"{MODEL_NAME}:latest"
DEFAULT_REVIEW_THRESHOLD = 0.6
ENV_PREFIX = "BRAINTUMOR_"
MODEL_TAG_ARGUMENT = "model_tag"


class ServingConfig(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    model_tag: str = DEFAULT_MODEL_TAG
    review_threshold: float | None = None
    backend: str = "auto"
    onnx_threads: int = Field(default=1, ge=1)
    api_threads: int = Field(default=2, ge=1)
    workers: int = Field(default=2, ge=1)
    max_batch_size: int = Field(default=32, ge=2)
    max_latency_ms: int = Field(default=1000, ge=1)
    reject_not_mri: bool = False
    limits: UploadLimits = Field(default_factory=UploadLimits)

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if value not in BACKENDS:
            raise ValueError(f"BRAINTUMOR_BACKEND must be one of {BACKENDS}, not {value!r}")
        return value

    @classmethod
    def from_env(
        cls,
        environ: MutableMapping[str, str] | None = None,
        arguments: Mapping[str, Any] | None = None,
    ) -> ServingConfig:
        """Read BRAINTUMOR_* variables; a `model_tag` Bento argument wins over the variable."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {"limits": UploadLimits.from_env(env)}
        for field in cls.model_fields:
            raw = env.get(ENV_PREFIX + field.upper(), "").strip()
            if raw and field != "limits":
                values[field] = raw
        pinned = (arguments or {}).get(MODEL_TAG_ARGUMENT)
        if pinned:
            values["model_tag"] = str(pinned)
        return cls.model_validate(values)

    def threshold_for(self, card: ModelCard) -> float:
        """The configured threshold, else the model's own, else the default; checked."""
        for value in (self.review_threshold, card.review_threshold, DEFAULT_REVIEW_THRESHOLD):
            if value is not None:
                return check_review_threshold(float(value), len(card.class_names))
        raise AssertionError("unreachable")
