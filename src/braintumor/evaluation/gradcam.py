"""Grad-CAM (Selvaraju et al., 2017): where in the image the model found its evidence.

`gradcam(model, image)` finds the last convolutional feature map automatically, also inside a
nested base network (how `build_classifier` wraps Keras applications), takes the gradient of
the class *logit* (the softmax is undone so a confident prediction still has gradients) with
respect to that map, weights its channels by the mean gradient, and returns the rectified map
resized to the image plus a colour overlay (viridis, colour-blind safe).

Serving imports this module for `heatmap_from` and `overlay_heatmap` (NumPy and OpenCV only;
Keras and TensorFlow are imported inside the functions that need them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np


class GradCamError(ValueError):
    """A model or image Grad-CAM cannot work with."""


@dataclass
class GradCam:
    """A heat map in [0, 1] at the image's size and an RGB uint8 overlay."""

    heatmap: np.ndarray  # (height, width) float32
    overlay: np.ndarray  # (height, width, 3) uint8 RGB
    class_index: int
    probability: float
    layer: str  # path of the feature map's layer, e.g. "efficientnetb0/top_activation"


# Layers that only move, pool or drop features: the map before them is the one to explain.
_SKIPPED = ("Pooling", "Dropout", "InputLayer", "Padding", "Cropping")


def _is_feature_layer(layer: Any) -> bool:
    """A layer whose output is a spatial feature map (rank 4), other than pooling/dropout.

    Tiny inputs can shrink the last map to 1x1; Grad-CAM is then uniform, which is honest.
    """
    import keras

    if isinstance(layer, keras.Model) or any(s in type(layer).__name__ for s in _SKIPPED):
        return False
    try:
        shape = layer.output.shape
    except (AttributeError, ValueError):  # not called, or called more than once
        return False
    return len(shape) == 4


def find_target_layer(model: Any) -> list[Any]:
    """The path [container, ..., layer] to the last spatial feature map of `model`.

    Searches the model's layers from the output back; a nested model is searched inside.
    The input normalisation layers are never chosen while a convolutional layer exists.
    """
    import keras

    for layer in reversed(model.layers):
        if isinstance(layer, keras.Model):
            try:
                return [layer, *find_target_layer(layer)]
            except GradCamError:
                continue
        if _is_feature_layer(layer) and _after_a_conv(model, layer):
            return [layer]
    raise GradCamError(
        f"model {model.name!r} has no convolutional feature map: Grad-CAM needs a CNN"
    )


def _after_a_conv(model: Any, layer: Any) -> bool:
    """True when a convolution (in `model` or a nested model) comes at or before `layer`."""

    for candidate in model.layers:
        if "Conv" in type(candidate).__name__:
            return True
        if candidate is layer:
            return False
    return False


def _forward(model: Any, inputs: Any, path: list[Any], captured: dict[str, Any]) -> Any:
    """Run `model` on `inputs`, capturing the target activation and the final logits."""
    import keras

    target = path[0]
    last = model.layers[-1]

    def operation_fn(op: Any):
        if op is target:
            if len(path) == 1:

                def capture(*args: Any, **kwargs: Any) -> Any:
                    captured["activation"] = op(*args, **kwargs)
                    return captured["activation"]

                return capture
            return lambda *args, **kwargs: _forward(op, args[0], path[1:], captured)
        if op is last and "logits" not in captured and _is_softmax_dense(op):

            def logits_then_softmax(x: Any, **kwargs: Any) -> Any:
                logits = keras.ops.matmul(x, op.kernel) + op.bias
                captured["logits"] = keras.ops.cast(logits, "float32")
                return keras.ops.softmax(captured["logits"])

            return logits_then_softmax
        return op

    outputs = model._run_through_graph([inputs], operation_fn)
    return outputs[0] if isinstance(outputs, list | tuple) else outputs


def _is_softmax_dense(layer: Any) -> bool:
    import keras

    return (
        isinstance(layer, keras.layers.Dense)
        and getattr(layer.activation, "__name__", "") == "softmax"
    )


def gradcam(
    model: Any,
    image: np.ndarray,
    class_index: int | None = None,
    *,
    layer_path: list[Any] | None = None,
    alpha: float = 0.45,
) -> GradCam:
    """Grad-CAM of `model` for one preprocessed image.

    Args:
        model: a Keras functional model (e.g. from `build_classifier` or `load_model`).
        image: the model input for one image, (size, size, channels) or (1, size, size,
            channels), float32 in [0, 255] as `preprocessing.preprocess` returns it.
        class_index: the class to explain; default: the predicted class.
        layer_path: override the automatically found [container..., layer] path.
        alpha: weight of the heat map in the overlay.

    Raises:
        GradCamError: wrong image shape, or no convolutional layer in the model.
    """
    import tensorflow as tf

    batch = np.asarray(image, dtype=np.float32)
    if batch.ndim == 3:
        batch = batch[None]
    expected = tuple(model.input_shape[1:])
    if batch.ndim != 4 or batch.shape[0] != 1 or tuple(batch.shape[1:]) != expected:
        raise GradCamError(f"expected one image of shape {expected}, got {np.shape(image)}")
    path = layer_path or find_target_layer(model)
    captured: dict[str, Any] = {}
    tensor = tf.convert_to_tensor(batch)
    with tf.GradientTape() as tape:
        probs = _forward(model, tensor, path, captured)
        activation = captured["activation"]
        scores = captured.get("logits", tf.math.log(tf.cast(probs, tf.float32) + 1e-9))
        probs_np = np.asarray(probs)[0]
        index = int(np.argmax(probs_np)) if class_index is None else int(class_index)
        if not 0 <= index < probs_np.shape[0]:
            raise GradCamError(f"class_index {index} outside 0..{probs_np.shape[0] - 1}")
        score = scores[:, index]
    grads = tape.gradient(score, activation)
    if grads is None:
        raise GradCamError("no gradient reaches the feature map: is the model a single graph?")
    weights = tf.reduce_mean(tf.cast(grads, tf.float32)[0], axis=(0, 1)).numpy()
    activation = tf.cast(activation, tf.float32)[0].numpy()
    heatmap = heatmap_from(activation, weights, batch.shape[1:3])
    return GradCam(
        heatmap=heatmap,
        overlay=overlay_heatmap(batch[0], heatmap, alpha=alpha),
        class_index=index,
        probability=float(probs_np[index]),
        layer="/".join(layer.name for layer in path),
    )


def heatmap_from(activation: np.ndarray, weights: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Grad-CAM's map: ReLU of the feature map (h, w, channels) weighted by `weights`
    (channels,), resized to `shape` (height, width) and scaled to [0, 1].

    The one implementation of the map: Keras Grad-CAM above, and the service, which gets
    `activation` and `weights` from the ONNX serving graph (`models.export`)."""
    cam = np.maximum(np.tensordot(np.asarray(activation, np.float32), weights, axes=([-1], [0])), 0)
    resized = cv2.resize(
        cam.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR
    )
    return _normalise(resized)


def _normalise(cam: np.ndarray) -> np.ndarray:
    cam = np.maximum(cam.astype(np.float32), 0.0)
    peak = float(cam.max())
    return cam / peak if peak > 0 else np.zeros_like(cam)


def overlay_heatmap(image: np.ndarray, heatmap: np.ndarray, *, alpha: float = 0.45) -> np.ndarray:
    """Blend a [0, 1] heat map (viridis) over the grayscale image; RGB uint8."""
    gray = np.asarray(image, dtype=np.float32)
    gray = gray.mean(axis=-1) if gray.ndim == 3 else gray
    gray = np.clip(gray, 0, 255).astype(np.uint8)
    base = np.repeat(gray[..., None], 3, axis=-1).astype(np.float32)
    heat = np.clip(heatmap * 255.0, 0, 255).astype(np.uint8)
    colour = cv2.cvtColor(cv2.applyColorMap(heat, cv2.COLORMAP_VIRIDIS), cv2.COLOR_BGR2RGB)
    blended = (1.0 - alpha) * base + alpha * colour.astype(np.float32)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)
