"""The backbone registry and `build_classifier`, the one way the project builds a model.

Every classifier has the same outer shape, so serving, Grad-CAM and export treat them alike:

    image (size, size, channels) float32 in [0, 255]
      -> [RepeatChannels to 3, when an ImageNet backbone gets a 1-channel slice]
      -> BackboneNormalization (the backbone's own `preprocess_input`, inside the model)
      -> base (a nested keras.Model: a Keras application without its top, or the CNN)
      -> global pooling -> dropout -> [dense + dropout] -> softmax (float32)

`weights` is `None` (random), `"imagenet"` (from Keras' cache, downloading if needed) or the
path of a weights file for the *base* network: the Keras ImageNet `*_notop.h5` file you
downloaded yourself, or a `.weights.h5` saved from a base built by this module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from braintumor.constants import CLASS_NAMES
from braintumor.models.layers import BackboneNormalization, RepeatChannels
from braintumor.models.specs import (
    BACKBONE_INFO,
    IMAGENET,
    BackboneInfo,
    CnnSpec,
    HeadSpec,
)


class BackboneError(ValueError):
    """An unknown backbone or an input shape the backbone cannot take."""


class BackboneWeightsError(RuntimeError):
    """Weights that cannot be found, downloaded or loaded into the chosen backbone."""


BaseBuilder = Callable[[tuple[int, int, int], Any, CnnSpec], keras.Model]


@dataclass(frozen=True)
class Backbone(BackboneInfo):
    """One registry entry: its facts (`specs.BACKBONE_INFO`) and how to build its base."""

    preprocess_input: Callable[..., Any] = field(repr=False)  # Keras' own (the model has it)
    build_base: BaseBuilder = field(repr=False)


def _application(factory_path: str) -> BaseBuilder:
    def build(input_shape: tuple[int, int, int], weights: Any, cnn: CnnSpec) -> keras.Model:
        module_name, class_name = factory_path.rsplit(".", 1)
        module = getattr(keras.applications, module_name)
        factory = getattr(module, class_name)
        return factory(include_top=False, weights=weights, input_shape=input_shape, pooling=None)

    return build


def _build_cnn_base(input_shape: tuple[int, int, int], weights: Any, cnn: CnnSpec) -> keras.Model:
    inputs = keras.Input(shape=input_shape, name="cnn_input")
    x = inputs
    for block, (filters, convs) in enumerate(zip(cnn.filters, cnn.block_convs, strict=True), 1):
        for conv in range(1, convs + 1):
            x = keras.layers.Conv2D(
                filters, 3, padding="same", use_bias=False, name=f"block{block}_conv{conv}"
            )(x)
            x = keras.layers.BatchNormalization(
                momentum=cnn.batch_norm_momentum, name=f"block{block}_bn{conv}"
            )(x)
            x = keras.layers.Activation("relu", name=f"block{block}_relu{conv}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
        if cnn.block_dropout > 0:
            x = keras.layers.Dropout(cnn.block_dropout, name=f"block{block}_dropout")(x)
    return keras.Model(inputs, x, name="custom_cnn")


def _unit_scale(x: Any, data_format: str | None = None) -> Any:
    """The from-scratch CNN's `preprocess_input`: scale [0, 255] to [0, 1]."""
    return x / 255.0


def _entry(name: str, preprocess_input: Callable[..., Any], build_base: BaseBuilder) -> Backbone:
    info = BACKBONE_INFO[name]
    return Backbone(
        **{f: getattr(info, f) for f in BackboneInfo.__dataclass_fields__},
        preprocess_input=preprocess_input,
        build_base=build_base,
    )


_apps = keras.applications
BACKBONES: dict[str, Backbone] = {
    "vgg16": _entry("vgg16", _apps.vgg16.preprocess_input, _application("vgg16.VGG16")),
    "resnet50": _entry(
        "resnet50", _apps.resnet50.preprocess_input, _application("resnet50.ResNet50")
    ),
    "inceptionv3": _entry(
        "inceptionv3",
        _apps.inception_v3.preprocess_input,
        _application("inception_v3.InceptionV3"),
    ),
    "efficientnetb0": _entry(
        "efficientnetb0",
        _apps.efficientnet.preprocess_input,
        _application("efficientnet.EfficientNetB0"),
    ),
    "densenet121": _entry(
        "densenet121", _apps.densenet.preprocess_input, _application("densenet.DenseNet121")
    ),
    "mobilenetv2": _entry(
        "mobilenetv2",
        _apps.mobilenet_v2.preprocess_input,
        _application("mobilenet_v2.MobileNetV2"),
    ),
    "custom_cnn": _entry("custom_cnn", _unit_scale, _build_cnn_base),
}
assert set(BACKBONES) == set(BACKBONE_INFO)


def get_backbone(name: str) -> Backbone:
    try:
        return BACKBONES[name]
    except KeyError:
        raise BackboneError(
            f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}"
        ) from None


def build_classifier(
    backbone: str,
    *,
    input_shape: tuple[int, int, int] | None = None,
    num_classes: int = len(CLASS_NAMES),
    weights: str | Path | None = None,
    head: HeadSpec | None = None,
    cnn: CnnSpec | None = None,
    name: str | None = None,
) -> keras.Model:
    """Build a classifier over `backbone` (see the module docstring for its shape).

    Args:
        backbone: a key of `BACKBONES`.
        input_shape: (size, size, channels) of the model input, channels 1 or 3; defaults to
            the backbone's native size with 3 channels (1 for `custom_cnn`).
        num_classes: width of the softmax.
        weights: `None`, `"imagenet"`, or the path of a weights file for the base network.
        head: pooling, dropout and optional hidden dense layer.
        cnn: filters and blocks of `custom_cnn` (ignored by the other backbones).
        name: the model's name (default `braintumor_<backbone>`).

    Raises:
        BackboneError: unknown backbone or unusable input shape.
        BackboneWeightsError: weights that cannot be downloaded, found or loaded.
    """
    entry = get_backbone(backbone)
    head = head or HeadSpec()
    cnn = cnn or CnnSpec()
    if input_shape is None:
        input_shape = (entry.input_size, entry.input_size, 3 if entry.needs_rgb else 1)
    input_shape = tuple(int(v) for v in input_shape)  # type: ignore[assignment]
    _check_input_shape(entry, input_shape, cnn)
    if num_classes < 2:
        raise BackboneError(f"num_classes must be at least 2, not {num_classes}")
    base_channels = 3 if entry.needs_rgb else input_shape[2]
    base_shape = (input_shape[0], input_shape[1], base_channels)
    base = _build_base(entry, base_shape, weights, cnn)

    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    if input_shape[2] != base_channels:
        x = RepeatChannels(base_channels, name="repeat_channels")(x)
    mode = cnn.input_normalization if entry.name == "custom_cnn" else entry.normalization
    x = BackboneNormalization(mode, name="normalization")(x)
    x = base(x)
    pool = {
        "avg": keras.layers.GlobalAveragePooling2D,
        "max": keras.layers.GlobalMaxPooling2D,
        "flatten": keras.layers.Flatten,
    }[head.pooling]
    x = pool(name="pool")(x)
    if head.dropout > 0:
        x = keras.layers.Dropout(head.dropout, name="head_dropout")(x)
    if head.dense_units:
        x = keras.layers.Dense(head.dense_units, activation="relu", name="head_dense")(x)
        if head.dropout > 0:
            x = keras.layers.Dropout(head.dropout, name="head_dense_dropout")(x)
    # float32 output even under mixed precision, so softmax and losses stay stable.
    outputs = keras.layers.Dense(
        num_classes, activation="softmax", dtype="float32", name="predictions"
    )(x)
    return keras.Model(inputs, outputs, name=name or f"braintumor_{entry.name}")


def shift_class_logits(model: keras.Model, shift: Any) -> None:
    """Add `shift` (one value per class) to the bias of the softmax layer, in place.

    The model then answers softmax(logits + shift): per-class offsets fitted after training
    (`braintumor.evaluation.calibration.fit_class_bias`) become part of the weights, so every
    consumer of the model (evaluation, ONNX export, serving, Grad-CAM) sees the same thing.
    """
    layer = model.layers[-1]
    shift = np.asarray(shift, dtype=np.float32).reshape(-1)
    softmax = keras.activations.softmax
    if not isinstance(layer, keras.layers.Dense) or layer.activation is not softmax:
        raise BackboneError(f"the last layer of {model.name!r} is not a softmax Dense layer")
    kernel, bias = layer.get_weights()
    if shift.shape != bias.shape:
        raise BackboneError(f"need one shift per class ({bias.shape[0]}), got {shift.shape[0]}")
    layer.set_weights([kernel, bias + shift])


def base_model(model: keras.Model) -> keras.Model:
    """The nested base network of a classifier made by `build_classifier`."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            return layer
    raise BackboneError(f"model {model.name!r} has no nested base network")


def set_trainable_top(model: keras.Model, top_layers: int | None) -> int:
    """Freeze the base, then unfreeze its last `top_layers` layers (None: all of them).

    Batch normalisation layers stay frozen (inference mode) so fine-tuning with small batches
    does not wreck their ImageNet statistics. Returns how many base layers are trainable.
    The head is always trainable. Recompile the model after calling this.
    """
    base = base_model(model)
    base.trainable = True
    layers = base.layers
    cut = 0 if top_layers is None else max(len(layers) - int(top_layers), 0)
    trainable = 0
    for index, layer in enumerate(layers):
        unfrozen = index >= cut and not isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = unfrozen
        trainable += int(unfrozen and bool(layer.weights))
    return trainable


def freeze_base(model: keras.Model) -> None:
    """Phase one of transfer learning: only the head trains."""
    base_model(model).trainable = False


def _check_input_shape(entry: Backbone, input_shape: tuple[int, ...], cnn: CnnSpec) -> None:
    if len(input_shape) != 3:
        raise BackboneError(f"input_shape must be (size, size, channels), not {input_shape}")
    height, width, channels = input_shape
    if channels not in (1, 3):
        raise BackboneError(f"input channels must be 1 or 3, not {channels}")
    if min(height, width) < entry.min_size:
        raise BackboneError(
            f"{entry.name} needs images of at least {entry.min_size}x{entry.min_size}, "
            f"got {height}x{width}: raise preprocessing.image_size"
        )
    if entry.name == "custom_cnn":
        pools = len(cnn.filters)
        if min(height, width) < 2**pools:
            raise BackboneError(f"custom_cnn needs at least {2**pools} px, got {height}x{width}")


def _build_base(
    entry: Backbone, base_shape: tuple[int, int, int], weights: str | Path | None, cnn: CnnSpec
) -> keras.Model:
    if weights is None:
        base = entry.build_base(base_shape, None, cnn)
        # Trained from scratch: Keras applications use momentum 0.99-0.999, too slow for a few
        # thousand images (see CnnSpec.batch_norm_momentum); pretrained bases keep theirs.
        for layer in base.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = cnn.batch_norm_momentum
        return base
    if str(weights) == IMAGENET:
        if not entry.pretrained:
            raise BackboneWeightsError(
                f"{entry.name} has no ImageNet weights: use weights null or a weights file"
            )
        try:
            return entry.build_base(base_shape, IMAGENET, cnn)
        except (OSError, ConnectionError, TimeoutError) as exc:  # urllib errors are OSErrors
            raise BackboneWeightsError(
                f"could not get the ImageNet weights of {entry.name} ({exc}). Keras downloads "
                "them once into ~/.keras/models (or $KERAS_HOME/models); on a machine without "
                "internet, copy the `*_notop.h5` file there or pass its path as `weights`."
            ) from exc
    path = Path(weights).expanduser()
    if not path.is_file():
        raise BackboneWeightsError(
            f"weights file {path} not found: give `imagenet`, null, or the path of a weights "
            f"file for the {entry.name} base network"
        )
    try:
        if entry.pretrained:
            return entry.build_base(base_shape, str(path), cnn)
        base = entry.build_base(base_shape, None, cnn)
        base.load_weights(str(path))
        return base
    except (ValueError, OSError, KeyError) as exc:
        raise BackboneWeightsError(
            f"the weights file {path} does not fit the {entry.name} base with input "
            f"{base_shape} ({exc})"
        ) from exc
