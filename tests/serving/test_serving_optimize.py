"""Int8 quantization and the rule that decides whether a faster runtime may serve."""

from __future__ import annotations

import numpy as np
import pytest

from braintumor.serving.optimize import (
    RuntimeCheck,
    accept_runtime,
    check_runtime,
    quantize_int8,
)

REFERENCE = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.6, 0.2, 0.1], [0.2, 0.2, 0.5, 0.1]])


def test_check_of_identical_outputs():
    check = check_runtime("onnx", REFERENCE, REFERENCE.copy(), labels=np.array([0, 1, 2]))
    assert check.agreement == 1.0 and check.max_abs_diff == 0.0
    assert check.weighted_f1_keras == check.weighted_f1 == 1.0 and check.f1_drop == 0.0
    assert accept_runtime(check)
    assert check.to_dict()["weighted_f1_drop"] == 0.0


def test_check_counts_disagreements_and_f1_drop():
    flipped = REFERENCE.copy()
    flipped[2] = [0.6, 0.1, 0.2, 0.1]  # the third image now says class 0
    check = check_runtime("onnx-int8", REFERENCE, flipped, labels=np.array([0, 1, 2]))
    assert check.agreement == pytest.approx(2 / 3)
    assert check.max_abs_diff == pytest.approx(0.4)
    assert check.f1_drop > 0.005
    assert not accept_runtime(check)


@pytest.mark.parametrize(
    "agreement, f1_keras, f1, accepted",
    [
        (1.0, 0.920, 0.916, True),  # drop 0.004
        (1.0, 0.920, 0.914, False),  # drop 0.006
        (0.999, 0.920, 0.925, True),  # better is fine
        (0.990, None, None, False),  # no labels: agreement decides
        (0.996, None, None, True),
    ],
)
def test_acceptance_rule(agreement, f1_keras, f1, accepted):
    check = RuntimeCheck("onnx-int8", 1000, agreement, 0.01, f1_keras, f1)
    assert accept_runtime(check) is accepted


def test_check_refuses_mismatched_arrays():
    with pytest.raises(ValueError, match="equal"):
        check_runtime("onnx", REFERENCE, REFERENCE[:2])


def test_int8_model_is_close_to_fp32_and_served_by_onnx_runtime(
    tiny_model, tiny_onnx, sample_arrays, tmp_path
):
    import onnxruntime as ort

    x, _, _ = sample_arrays
    path = quantize_int8(tiny_onnx, x[::2], tmp_path / "model.int8.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    import onnx

    nodes = onnx.load(str(path)).graph.node
    ops = {node.op_type for node in nodes}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    # The first convolution reads float input directly (it stays unquantized).
    first_conv = next(node for node in nodes if node.op_type == "Conv")
    producers = {out: node.op_type for node in nodes for out in node.output}
    assert producers.get(first_conv.input[1]) != "DequantizeLinear"
    got = session.run(["probabilities"], {session.get_inputs()[0].name: x})[0]
    expected = np.asarray(tiny_model(x, training=False))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)  # softmax stays float
    assert np.abs(got - expected).max() < 0.05


def test_quantization_needs_image_batches(tiny_onnx, tmp_path):
    with pytest.raises(ValueError, match="batch of images"):
        quantize_int8(tiny_onnx, np.zeros((64, 64)), tmp_path / "q.onnx")
