"""Export a trained classifier for serving: ONNX (via Keras' own tf2onnx exporter).

`to_serving_onnx` writes the graph the service runs. It takes the same tensor as the Keras
model (float32 (batch, size, size, channels) in [0, 255], the backbone normalisation included)
with a dynamic batch size, and returns, in one session run, the named outputs of
`SERVING_OUTPUTS`:

- `probabilities`: softmax(logits / T), the calibrated class probabilities (T: the model
  card's temperature, baked into the graph);
- `logits`: the uncalibrated class scores (for the energy score);
- `embedding`: the pooled features the classifier head reads (the OOD detector's input);
- `activation`: the last convolutional feature map (what Grad-CAM explains);
- `cam_weights`: (batch, classes, channels), Grad-CAM's channel weights, the spatial mean of
  the gradient of each class logit with respect to `activation`.

tf2onnx cannot export gradient ops (MaxPoolGrad), so `cam_weights` is built from the head's
Jacobian instead: between the feature map and the logits there are only non-overlapping max
pools, dropout, a global pooling (or flatten), an optional ReLU dense layer and the final
dense layer. Each window of a max pool passes its gradient to exactly one position, so the
gradient summed over the feature map equals the gradient with respect to the pooled features,
and the spatial mean is d(logits)/d(embedding) summed over positions, divided by the map's
area: exactly what TensorFlow's gradient gives (tests compare with Keras Grad-CAM). Other
layers there raise `ExportError`. With this graph, serving needs ONNX Runtime only.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import numpy as np

from braintumor.models.precision import as_float32


class ExportError(RuntimeError):
    """A model that cannot be exported, or an export that disagrees with its model."""


def to_onnx(model: Any, path: str | Path, *, opset: int | None = None) -> Path:
    """Write `model` as an ONNX file at `path` (float32 weights; mixed precision is undone).

    Needs `tf2onnx` (the `export` extra). Returns the path.
    """
    import keras

    try:
        import tf2onnx  # noqa: F401
    except ImportError as exc:
        raise ExportError("ONNX export needs tf2onnx: pip install tf2onnx") from exc
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    model = as_float32(model)
    spec = keras.InputSpec(shape=(None, *model.input_shape[1:]), dtype="float32")
    # tf2onnx prints a lot; keep the caller's output readable.
    with contextlib.redirect_stdout(io.StringIO()):
        model.export(
            str(target), format="onnx", verbose=False, input_signature=[spec], opset_version=opset
        )
    if not target.is_file():
        raise ExportError(f"the ONNX exporter wrote nothing at {target}")
    return target


OUT_PROBABILITIES = "probabilities"
OUT_LOGITS = "logits"
OUT_EMBEDDING = "embedding"
OUT_ACTIVATION = "activation"
OUT_CAM_WEIGHTS = "cam_weights"
SERVING_OUTPUTS = (OUT_PROBABILITIES, OUT_LOGITS, OUT_EMBEDDING, OUT_ACTIVATION, OUT_CAM_WEIGHTS)

# Layers allowed between the explained feature map and the logits (see the module docstring).
_PASS_THROUGH = ("Dropout",)
_GLOBAL_POOLS = ("GlobalAveragePooling2D", "GlobalMaxPooling2D", "Flatten")


def serving_model(model: Any, temperature: float = 1.0) -> Any:
    """A Keras model with the named outputs of `SERVING_OUTPUTS` (see the module docstring),
    sharing `model`'s layers and weights. `model` is a classifier of `build_classifier`."""
    import keras
    from keras import ops

    from braintumor.evaluation.gradcam import find_target_layer

    if not (temperature > 0):
        raise ExportError(f"temperature must be positive, not {temperature}")
    model = as_float32(model)
    path = find_target_layer(model)
    if len(path) != 2 or not isinstance(path[0], keras.Model):
        raise ExportError(
            "the serving graph needs the explained feature map inside the nested base network "
            f"(found {'/'.join(layer.name for layer in path)})"
        )
    base, target = path
    after_target = base.layers[[layer.name for layer in base.layers].index(target.name) + 1 :]
    for layer in after_target:
        kind = type(layer).__name__
        pooled_ok = kind == "MaxPooling2D" and tuple(layer.pool_size) == tuple(layer.strides)
        if not (pooled_ok and layer.padding == "valid") and kind not in _PASS_THROUGH:
            raise ExportError(f"cannot export Grad-CAM weights through {kind} {layer.name!r}")
    outer = model.layers
    if outer[-1].__class__.__name__ != "Dense" or base not in outer:
        raise ExportError(f"{model.name!r} is not a classifier made by build_classifier")

    inputs = keras.Input(shape=model.input_shape[1:], name="image")
    with_map = keras.Model(base.inputs, [target.output, base.output], name="base_with_map")
    x = inputs
    activation = embedding = hidden = None
    head = outer[outer.index(base) + 1 : -1]
    for layer in outer[1 : outer.index(base)]:
        x = layer(x)
    activation, x = with_map(x)
    for layer in head:
        kind = type(layer).__name__
        if kind in _GLOBAL_POOLS:
            x = embedding = layer(x)
        elif kind == "Dense" and hidden is None and embedding is not None:
            if getattr(layer.activation, "__name__", "") != "relu":
                raise ExportError(f"the hidden dense layer {layer.name!r} must use ReLU")
            hidden = layer
            x = layer(x)
        elif kind in _PASS_THROUGH:
            x = layer(x)
        else:
            raise ExportError(f"cannot export Grad-CAM weights through {kind} {layer.name!r}")
    if embedding is None:
        raise ExportError(f"{model.name!r} has no global pooling or flatten before its head")
    last = outer[-1]
    logits = ops.matmul(x, last.kernel) + last.bias
    probabilities = ops.softmax(logits / float(temperature))

    # d(logits)/d(embedding), per image when a ReLU dense layer sits in between: (N, E, C).
    if hidden is None:
        jacobian = ops.expand_dims(ops.zeros_like(embedding[:, :1]), -1) + last.kernel
    else:
        active = ops.cast(ops.matmul(embedding, hidden.kernel) + hidden.bias > 0, "float32")
        jacobian = ops.matmul(hidden.kernel, ops.expand_dims(active, -1) * last.kernel)
    height, width, channels = activation.shape[1:]
    positions = embedding.shape[-1] // channels  # 1 after global pooling, h'*w' after flatten
    jacobian = ops.sum(ops.reshape(jacobian, (-1, positions, channels, last.units)), axis=1)
    cam_weights = ops.transpose(jacobian, (0, 2, 1)) / float(height * width)
    outputs = {
        OUT_PROBABILITIES: probabilities,
        OUT_LOGITS: logits,
        OUT_EMBEDDING: embedding,
        OUT_ACTIVATION: activation,
        OUT_CAM_WEIGHTS: cam_weights,
    }
    return keras.Model(inputs, outputs, name=f"{model.name}_serving")


def serving_outputs(
    model: Any, x: np.ndarray, temperature: float = 1.0, batch_size: int = 64
) -> dict[str, np.ndarray]:
    """The serving graph's outputs, computed by Keras, for images `x` (N, H, W, C): what the
    ONNX graph returns (within float precision), for fitting the guard in the pipeline."""
    import keras

    graph = serving_model(model, temperature)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in SERVING_OUTPUTS}
    for start in range(0, len(x), batch_size):
        batch = np.asarray(x[start : start + batch_size], dtype=np.float32)
        for name, value in graph(batch, training=False).items():
            parts[name].append(keras.ops.convert_to_numpy(value))
    return {name: np.concatenate(values) for name, values in parts.items() if values}


def to_serving_onnx(model: Any, path: str | Path, temperature: float = 1.0) -> Path:
    """Write the service's ONNX graph (`serving_model`) at `path`."""
    return to_onnx(serving_model(model, temperature), path)


def onnx_predict(session: Any, x: np.ndarray) -> np.ndarray:
    name = session.get_inputs()[0].name
    return session.run(None, {name: np.asarray(x, dtype=np.float32)})[0]


def onnx_outputs(session: Any, x: np.ndarray, names: tuple[str, ...] | None = None) -> dict:
    """The named outputs of a serving graph for the batch `x` (all of them by default)."""
    names = names or tuple(output.name for output in session.get_outputs())
    feed = {session.get_inputs()[0].name: np.asarray(x, dtype=np.float32)}
    return dict(zip(names, session.run(list(names), feed), strict=True))


def check_onnx_parity(
    model: Any, path: str | Path, x: np.ndarray, atol: float = 1e-4, temperature: float = 1.0
) -> float:
    """Largest |Keras - ONNX| probability difference on `x`; raises ExportError above `atol`.

    `path` is a serving graph (`to_serving_onnx`) or a plain export of `model`; `temperature`
    is the one baked into the serving graph."""
    import keras

    raw = keras.ops.convert_to_numpy(model(np.asarray(x, np.float32), training=False))
    from braintumor.serving.predictor import onnx_session

    expected = _tempered(raw, temperature)
    session = onnx_session(path)
    if OUT_PROBABILITIES in {output.name for output in session.get_outputs()}:
        got = onnx_outputs(session, x, (OUT_PROBABILITIES,))[OUT_PROBABILITIES]
    else:
        got = onnx_predict(session, x)
    worst = float(np.max(np.abs(expected.astype(np.float64) - got)))
    if worst > atol:
        raise ExportError(f"ONNX and Keras predictions differ by {worst:.2e} (> {atol:.0e})")
    return worst


def _tempered(probs: np.ndarray, temperature: float) -> np.ndarray:
    if temperature == 1.0:
        return probs
    from braintumor.evaluation.calibration import calibrate

    return calibrate(probs, temperature)
