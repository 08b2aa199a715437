"""Float32 copies of mixed-precision models.

Mixed precision (bfloat16 or float16 compute) only speeds up training: the weights stay
float32. The trained model is handed on in float32, so that evaluation, ONNX export and
serving all compute the same thing, on any CPU (emulated bfloat16 is slow, and a bfloat16
Keras model and its float32 ONNX graph differ by ~1e-2, which the export parity check rejects).
"""

from __future__ import annotations

from typing import Any


def is_float32(model: Any) -> bool:
    """Whether every layer (nested models included) computes in float32."""
    return all(
        getattr(layer.dtype_policy, "name", "float32") == "float32" for layer in _layers(model)
    )


def as_float32(model: Any) -> Any:
    """`model` itself if it is float32, else an uncompiled float32 copy with its weights."""
    import keras

    if is_float32(model):
        return model
    previous = keras.config.dtype_policy().name
    keras.config.set_dtype_policy("float32")
    try:
        clone = model.__class__.from_config(_strip_policies(model.get_config()))
    finally:
        keras.config.set_dtype_policy(previous)
    clone.set_weights(model.get_weights())
    return clone


def _layers(model: Any) -> list[Any]:
    found = []
    for layer in model.layers:
        found.append(layer)
        if hasattr(layer, "layers"):
            found.extend(_layers(layer))
    return found


def _strip_policies(config: Any) -> Any:
    if isinstance(config, dict):
        return {
            k: _strip_policies(v) for k, v in config.items() if k != "dtype" or not _is_policy(v)
        }
    if isinstance(config, list):
        return [_strip_policies(v) for v in config]
    return config


def _is_policy(value: Any) -> bool:
    return isinstance(value, dict) and value.get("class_name") == "DTypePolicy"
