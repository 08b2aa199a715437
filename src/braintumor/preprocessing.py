"""Pixels to model input: the one preprocessing path shared by the DVC CLAHE stage,
training and serving.

`preprocess(gray, spec)` takes a decoded grayscale slice (see `imaging.decode_image`) and
returns float32 (size, size, channels) in [0, 255]. Each backbone's own normalisation
(`preprocess_input`) lives inside the model, so this function is the same for all of them.
Order: optional crop to the head -> pad to a square (no distortion) -> resize -> optional
CLAHE (after resizing, so it acts the same whatever the original resolution) -> channels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

Variant = Literal["raw", "clahe"]

# Pixels brighter than this (0..255) count as head, not background, when cropping.
HEAD_THRESHOLD = 20


class PreprocessSpec(BaseModel):
    """Everything needed to turn a slice into model input: the one declaration of
    preprocessing and its defaults.

    A training config holds one (`TrainingConfig.preprocessing`, whose defaults these are),
    the DVC stage builds one from params.yaml (`params.ClaheParams.spec`), and every model
    card stores one as a dict (`to_dict`), which serving reads back (`from_dict`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    image_size: int = Field(128, ge=16, le=1024)
    channels: Literal[1, 3] = 1  # 1: grayscale; 3: the gray slice repeated (ImageNet backbones)
    variant: Variant = "raw"
    clahe_clip_limit: float = Field(2.0, gt=0)
    clahe_tile_grid: int = Field(8, ge=1)
    crop_to_head: bool = False

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.image_size, self.image_size, self.channels)

    def to_dict(self) -> dict[str, Any]:
        """What a model card stores."""
        return self.model_dump()

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PreprocessSpec:
        """A spec from a model card's dict (ValueError on unknown or bad settings)."""
        unknown = set(values) - set(cls.model_fields)
        if unknown:
            raise ValueError(f"unknown preprocessing settings: {sorted(unknown)}")
        return cls.model_validate(values)


def apply_clahe(gray: np.ndarray, clip_limit: float, tile_grid: int) -> np.ndarray:
    """Contrast limited adaptive histogram equalisation (OpenCV's), uint8 in and out."""
    clahe = cv2.createCLAHE(clipLimit=float(clip_limit), tileGridSize=(tile_grid, tile_grid))
    return clahe.apply(np.ascontiguousarray(gray, dtype=np.uint8))


def head_bounding_box(
    gray: np.ndarray, threshold: int = HEAD_THRESHOLD
) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the pixels above `threshold`; the whole image if none."""
    mask = gray > threshold
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0 or cols.size == 0:
        return 0, gray.shape[0], 0, gray.shape[1]
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def crop_to_head(gray: np.ndarray, threshold: int = HEAD_THRESHOLD) -> np.ndarray:
    top, bottom, left, right = head_bounding_box(gray, threshold)
    return gray[top:bottom, left:right]


def pad_to_square(gray: np.ndarray) -> np.ndarray:
    """Centre the image on a black square canvas (MRI background is black)."""
    height, width = gray.shape[:2]
    side = max(height, width)
    if height == width:
        return gray
    canvas = np.zeros((side, side), dtype=gray.dtype)
    top, left = (side - height) // 2, (side - width) // 2
    canvas[top : top + height, left : left + width] = gray
    return canvas


def resize_square(gray: np.ndarray, size: int) -> np.ndarray:
    if gray.shape[0] == size and gray.shape[1] == size:
        return gray
    shrinking = gray.shape[0] > size
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(gray, (size, size), interpolation=interpolation)


def preprocess_gray(gray: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """The spatial and contrast steps of `preprocess`, as a (size, size) uint8 image."""
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError(f"expected a (H, W) uint8 grayscale image, got {gray.shape} {gray.dtype}")
    if spec.crop_to_head:
        gray = crop_to_head(gray)
    gray = resize_square(pad_to_square(gray), spec.image_size)
    if spec.variant == "clahe":
        gray = apply_clahe(gray, spec.clahe_clip_limit, spec.clahe_tile_grid)
    return gray


def preprocess(gray: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Grayscale uint8 slice -> float32 (size, size, channels) model input in [0, 255]."""
    image = preprocess_gray(gray, spec).astype(np.float32)
    return np.repeat(image[..., None], spec.channels, axis=-1)


def load_and_preprocess(path: str | Path, spec: PreprocessSpec) -> np.ndarray:
    """Read a file from disk and preprocess it (training and evaluation use this)."""
    from braintumor.imaging import decode_image

    return preprocess(decode_image(Path(path).read_bytes()).pixels, spec)
