"""Serving configuration, read once from the environment (all optional).

| variable | default | meaning |
|---|---|---|
| BRAINTUMOR_MODEL_TAG | brain-tumor-classifier:latest | model to serve (a Bento pins its own) |
| BRAINTUMOR_REVIEW_THRESHOLD | the card's, else 0.6 | `needs_review` when top probability < this |
| BRAINTUMOR_BACKEND | auto | auto (int8 ONNX when packaged), onnx-int8 or onnx |
| BRAINTUMOR_REJECT_NOT_MRI | false | 422 `not_a_brain_mri` for uploads failing the input checks |
| BRAINTUMOR_ONNX_THREADS | 2 | ONNX Runtime intra-op threads per worker (idle ones sleep) |
| BRAINTUMOR_API_THREADS | 2 | threads per worker running the (sync) API functions |
| BRAINTUMOR_WORKERS | 1 | server worker processes (each holds a copy of the model) |
| BRAINTUMOR_MAX_BATCH_SIZE | 32 | adaptive batching: most images per model call |
| BRAINTUMOR_MAX_LATENCY_MS | 1000 | adaptive batching: latency budget of a batch |
| BRAINTUMOR_MAX_UPLOAD_BYTES / _MAX_PIXELS / _MAX_REQUEST_BYTES | see `UploadLimits` | limits |
| BRAINTUMOR_API_KEYS | (none) | comma-separated API keys; with any key set, requests need one |
| BRAINTUMOR_API_KEYS_FILE | (none) | file of API keys, one a line (`#` comments), adds to those |
| BRAINTUMOR_PREDICTION_LOG_DIR | (none: no log) | folder of the daily prediction logs |
| BRAINTUMOR_PREDICTION_LOG_RETENTION_DAYS | 90 | days of daily log files kept; 0: all |

With API keys set, requests send one as `X-API-Key: <key>` or `Authorization: Bearer <key>`
(else 401 `unauthorized`); `/healthz`, `/readyz`, `/livez`, `/metrics` and the page `/` stay
open, and the page asks for the key for its own calls (see `braintumor.serving.auth`).

A Bento built by `build_bento` carries the exact model tag as a Bento argument (`bentoml build
--arg model_tag=...`), restored whenever that Bento is served: it always serves the model it
was built with, whatever "latest" is in the local model store.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path
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
API_KEYS_ENV = "BRAINTUMOR_API_KEYS"
API_KEYS_FILE_ENV = "BRAINTUMOR_API_KEYS_FILE"


def read_api_keys(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The API keys of `BRAINTUMOR_API_KEYS` (comma-separated) and of the file named by
    `BRAINTUMOR_API_KEYS_FILE` (one per line, blank lines and `#` comments ignored), in
    order, without repeats; () when neither is set (the service is open).

    Raises:
        ValueError: the file cannot be read, or a variable is set but holds no key (an
            unreadable or empty key file must not leave the service open by accident).
    """
    env = os.environ if environ is None else environ
    keys: list[str] = []
    listed = env.get(API_KEYS_ENV, "")
    if listed.strip():
        found = [key.strip() for key in listed.split(",") if key.strip()]
        if not found:
            raise ValueError(f"{API_KEYS_ENV} is set but holds no key (comma-separated keys)")
        keys += found
    file_name = env.get(API_KEYS_FILE_ENV, "").strip()
    if file_name:
        try:
            text = Path(file_name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"{API_KEYS_FILE_ENV}: cannot read {file_name} ({exc})") from None
        lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
        found = [line for line in lines if line]
        if not found:
            raise ValueError(f"{API_KEYS_FILE_ENV}: {file_name} holds no key (one per line)")
        keys += found
    for key in keys:
        if any(not " " < char <= "~" for char in key):
            raise ValueError(
                "API keys must be printable ASCII without spaces (they travel in HTTP headers)"
            )
    return tuple(dict.fromkeys(keys))


class ServingConfig(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    model_tag: str = DEFAULT_MODEL_TAG
    review_threshold: float | None = None
    backend: str = "auto"
    onnx_threads: int = Field(default=2, ge=1)
    api_threads: int = Field(default=2, ge=1)
    # One worker: with two ONNX threads it serves as many requests/s as two workers on 2 cores
    # in two thirds of the memory (benchmarks/results/abstention.json); more cores, more workers.
    workers: int = Field(default=1, ge=1)
    max_batch_size: int = Field(default=32, ge=2)
    max_latency_ms: int = Field(default=1000, ge=1)
    reject_not_mri: bool = False
    limits: UploadLimits = Field(default_factory=UploadLimits)
    api_keys: tuple[str, ...] = Field(default=(), repr=False)  # never in logs or reprs

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
        values: dict[str, object] = {
            "limits": UploadLimits.from_env(env),
            "api_keys": read_api_keys(env),
        }
        for field in cls.model_fields:
            raw = env.get(ENV_PREFIX + field.upper(), "").strip()
            if raw and field not in values:
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
