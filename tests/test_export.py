"""ONNX export: the exported graph gives the Keras model's probabilities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from braintumor.models.backbones import CnnSpec, build_classifier
from braintumor.models.export import check_onnx_parity, onnx_predict, to_onnx
from braintumor.models.precision import as_float32, global_dtype_policy
from braintumor.serving.predictor import onnx_session

pytest.importorskip("tf2onnx")


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("custom_cnn", (64, 64, 1)),
        pytest.param("mobilenetv2", (48, 48, 1), marks=pytest.mark.slow),
    ],
)
def test_onnx_matches_keras_within_1e4_for_any_batch_size(name, shape, tmp_path: Path) -> None:
    model = build_classifier(name, input_shape=shape, cnn=CnnSpec(filters=(16, 32, 64)))
    path = to_onnx(model, tmp_path / f"{name}.onnx")
    assert path.stat().st_size > 10_000
    rng = np.random.default_rng(0)
    for batch in (1, 5):
        x = rng.uniform(0, 255, (batch, *shape)).astype("float32")
        assert check_onnx_parity(model, path, x, atol=1e-4) <= 1e-4
    probs = onnx_predict(onnx_session(path, threads=1), x)
    assert probs.shape == (5, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_a_bfloat16_trained_model_exports_as_float32(tmp_path: Path) -> None:
    import keras

    with global_dtype_policy("mixed_bfloat16"):
        model = build_classifier(
            "custom_cnn", input_shape=(32, 32, 1), cnn=CnnSpec(filters=(8, 16))
        )
    x = np.random.default_rng(1).uniform(0, 255, (4, 32, 32, 1)).astype("float32")
    path = to_onnx(model, tmp_path / "bf16.onnx")
    exported = onnx_predict(onnx_session(path, threads=1), x)
    assert exported.dtype == np.float32
    # The ONNX graph computes in float32 with the same weights: close to the bf16 model.
    np.testing.assert_allclose(exported, keras.ops.convert_to_numpy(model(x)), atol=0.03)
    # Its float32 copy (what training hands on) matches the graph to 1e-4, so it serves on ONNX.
    assert check_onnx_parity(as_float32(model), path, x, atol=1e-4) <= 1e-4
