"""Mixed-precision models are handed on as float32 copies with the same weights."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from braintumor.models.backbones import CnnSpec, build_classifier
from braintumor.models.precision import as_float32, global_dtype_policy, is_float32


def build_under(policy: str, name: str, shape: tuple[int, int, int]):
    with global_dtype_policy(policy):
        return build_classifier(name, input_shape=shape, cnn=CnnSpec(filters=(8, 16)))


@pytest.mark.parametrize(
    ("name", "shape"), [("custom_cnn", (32, 32, 1)), ("mobilenetv2", (48, 48, 3))]
)
def test_a_bfloat16_model_becomes_float32_with_the_same_weights(name, shape) -> None:
    model = build_under("mixed_bfloat16", name, shape)
    assert not is_float32(model)
    copy = as_float32(model)
    assert is_float32(copy)  # nested base models included (mobilenetv2)
    assert keras.config.dtype_policy().name == "float32"
    for ours, theirs in zip(copy.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    x = np.random.default_rng(0).uniform(0, 255, (3, *shape)).astype("float32")
    fp32 = keras.ops.convert_to_numpy(copy(x, training=False))
    assert fp32.dtype == np.float32
    bf16 = keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_allclose(fp32, bf16, atol=0.03)


def test_a_float32_model_is_returned_as_is() -> None:
    model = build_under("float32", "custom_cnn", (32, 32, 1))
    assert is_float32(model) and as_float32(model) is model
