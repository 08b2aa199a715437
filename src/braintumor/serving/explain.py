"""Grad-CAM for the service: run `braintumor.evaluation.gradcam` on one model input and
encode the overlay and the input as PNG (base64) for JSON answers and the web page."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np


@dataclass(frozen=True)
class ExplainedImage:
    class_index: int
    overlay_png: bytes
    input_png: bytes


def to_uint8_image(array: np.ndarray) -> np.ndarray:
    """An image array (float in [0, 1] or [0, 255], or integers; gray or RGB) as uint8."""
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.dtype == np.uint8:
        return array
    values = array.astype(np.float32)
    if values.size and float(np.nanmax(values)) <= 1.0:
        values = values * 255.0
    return np.clip(np.rint(np.nan_to_num(values)), 0, 255).astype(np.uint8)


def encode_png(array: np.ndarray) -> bytes:
    """Gray (H, W) or RGB (H, W, 3) array to PNG bytes."""
    image = to_uint8_image(array)
    if image.ndim == 3:
        image = cv2.cvtColor(image[..., :3], cv2.COLOR_RGB2BGR)
    ok, buffer = cv2.imencode(".png", image)
    if not ok:
        raise ValueError(f"cannot encode an array of shape {array.shape} as PNG")
    return buffer.tobytes()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def explain_tensor(model: Any, tensor: np.ndarray, class_index: int) -> ExplainedImage:
    """Grad-CAM of `model` on one preprocessed input (H, W, C) for `class_index`, with the
    input itself as the model saw it."""
    from braintumor.evaluation.gradcam import gradcam

    result = gradcam(model, tensor, class_index=class_index)
    return ExplainedImage(
        class_index=class_index,
        overlay_png=encode_png(result.overlay),
        input_png=encode_png(tensor[..., 0] if tensor.ndim == 3 else tensor),
    )


def warm_up(predictor: Any) -> None:
    """Load the Keras model and run Grad-CAM once (TensorFlow import and graph tracing take
    seconds): called in the background at start so the first /explain is not the slow one."""
    tensor = np.zeros(predictor.input_shape, dtype=np.float32)
    explain_tensor(predictor.keras_model, tensor, class_index=0)
