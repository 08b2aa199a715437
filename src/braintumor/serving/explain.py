"""Grad-CAM for the service: the heat map comes from the ONNX serving graph
(`Predictor.explain`); this module draws it over the model input and encodes both as PNG
(base64) for JSON answers and the web page. NumPy and OpenCV only."""

from __future__ import annotations

import base64

import cv2
import numpy as np

from braintumor.evaluation.gradcam import overlay_heatmap


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
    """Gray (H, W[, 1]) or RGB (H, W, 3) array to PNG bytes; a 3-channel model input whose
    channels are the same slice is written as gray."""
    image = to_uint8_image(array)
    if image.ndim == 3:
        image = cv2.cvtColor(image[..., :3], cv2.COLOR_RGB2BGR)
    ok, buffer = cv2.imencode(".png", image)
    if not ok:
        raise ValueError(f"cannot encode an array of shape {array.shape} as PNG")
    return buffer.tobytes()


def overlay(tensor: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """The heat map over one model input (H, W, C): RGB uint8."""
    return overlay_heatmap(np.asarray(tensor), heatmap)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
