"""Small serialisable layers that put each backbone's input normalisation inside the model.

Serving feeds every model the same tensor (`preprocessing.preprocess`: float32 in [0, 255]),
so whatever a backbone expects (caffe BGR mean subtraction, [-1, 1], torch mean/std, [0, 1])
happens in these first layers. This module imports only Keras so that serving can import it
cheaply before `keras.saving.load_model`; no Lambda layers (they break safe loading).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

# ImageNet statistics as Keras' `imagenet_utils.preprocess_input` uses them.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN_RGB = (0.485, 0.456, 0.406)
_TORCH_STD_RGB = (0.229, 0.224, 0.225)

NORMALIZATION_MODES: tuple[str, ...] = ("caffe", "tf", "torch", "unit", "standardize", "none")


@keras.saving.register_keras_serializable(package="braintumor")
class BackboneNormalization(keras.layers.Layer):
    """Map [0, 255] pixels to what a backbone was trained on.

    Modes (the same arithmetic as `keras.applications.imagenet_utils.preprocess_input`):
    - ``caffe``: RGB -> BGR, subtract the ImageNet mean per channel (VGG16, ResNet50).
    - ``tf``: scale to [-1, 1] (InceptionV3, MobileNetV2).
    - ``torch``: scale to [0, 1], then ImageNet mean/std per channel (DenseNet121).
    - ``unit``: scale to [0, 1] (the from-scratch CNN).
    - ``standardize``: per image, subtract its mean and divide by its standard deviation, so
      scans with other brightness and contrast (other scanners, other sources) look alike.
    - ``none``: pass through (EfficientNet normalises inside its own graph).
    """

    def __init__(self, mode: str = "unit", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in NORMALIZATION_MODES:
            raise ValueError(
                f"normalization mode must be one of {NORMALIZATION_MODES}, not {mode!r}"
            )
        self.mode = mode

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        channels = inputs.shape[-1]
        if self.mode == "none":
            return x
        if self.mode == "unit":
            return x / 255.0
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "standardize":
            mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)
            std = ops.std(x, axis=(1, 2, 3), keepdims=True)
            return (x - mean) / ops.maximum(std, 1.0)
        if channels != 3:
            raise ValueError(f"normalization mode {self.mode!r} needs 3 channels, got {channels}")
        if self.mode == "caffe":
            bgr = ops.flip(x, axis=-1)
            return bgr - ops.convert_to_tensor(_CAFFE_MEAN_BGR, dtype=self.compute_dtype)
        mean = ops.convert_to_tensor(_TORCH_MEAN_RGB, dtype=self.compute_dtype)
        std = ops.convert_to_tensor(_TORCH_STD_RGB, dtype=self.compute_dtype)
        return (x / 255.0 - mean) / std

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="braintumor")
class RepeatChannels(keras.layers.Layer):
    """Repeat a 1-channel slice to `channels` channels (ImageNet backbones want RGB)."""

    def __init__(self, channels: int = 3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if channels < 1:
            raise ValueError(f"channels must be positive, not {channels}")
        self.channels = int(channels)

    def call(self, inputs):
        if inputs.shape[-1] == self.channels:
            return inputs
        return ops.repeat(inputs, self.channels, axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.channels)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "channels": self.channels}


# What `keras.saving.load_model` needs to know when a caller prefers explicit custom objects.
CUSTOM_OBJECTS: dict[str, type[keras.layers.Layer]] = {
    "braintumor>BackboneNormalization": BackboneNormalization,
    "braintumor>RepeatChannels": RepeatChannels,
}
