"""Float32 copies of mixed-precision models.

Mixed precision (bfloat16 or float16 compute) only speeds up training: the weights stay
float32. The trained model is handed on in float32, so that evaluation, ONNX export and
serving all compute the same thing, on any CPU (emulated bfloat16 is slow, and a bfloat16
Keras model and its float32 ONNX graph differ by ~1e-2, which the export parity check rejects).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def global_dtype_policy(policy: str) -> Iterator[None]:
    """Build models under Keras' global dtype `policy`; the previous one comes back after."""
    import keras

    previous = keras.config.dtype_policy().name
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def is_float32(model: Any) -> bool:
    """Whether every layer (nested models included) computes in float32."""
    return all(
        getattr(layer.dtype_policy, "name", "float32") == "float32" for layer in _layers(model)
    )


def as_float32(model: Any) -> Any:
    """`model` itself if it is float32, else an uncompiled float32 copy with its weights."""
    if is_float32(model):
        return model
    with global_dtype_policy("float32"):
        clone = model.__class__.from_config(_strip_policies(model.get_config()))
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
