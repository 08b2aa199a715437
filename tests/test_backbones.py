"""Backbone registry: every backbone builds, trains a step, predicts; weights load; errors."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from braintumor.evaluation.gradcam import gradcam
from braintumor.models.backbones import (
    BACKBONES,
    BackboneError,
    BackboneWeightsError,
    CnnSpec,
    HeadSpec,
    base_model,
    build_classifier,
    freeze_base,
    set_trainable_top,
    shift_class_logits,
)
from braintumor.models.layers import BackboneNormalization, RepeatChannels


def tiny_size(name: str) -> int:
    return 75 if name == "inceptionv3" else 32


def gradcam_size(name: str) -> int:
    """Small, yet large enough for a last feature map of at least 2x2."""
    return 107 if name == "inceptionv3" else 64


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_builds_trains_one_step_predicts_and_explains(name: str) -> None:
    size = gradcam_size(name)
    model = build_classifier(name, input_shape=(size, size, 1), weights=None)
    assert model.input_shape == (None, size, size, 1)
    assert model.output_shape == (None, 4)
    model.compile(optimizer="adam", loss="categorical_crossentropy", run_eagerly=True)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (4, size, size, 1)).astype("float32")
    y = np.eye(4, dtype="float32")
    before = [w.copy() for w in model.get_weights()]
    loss = model.train_on_batch(x, y)
    assert np.isfinite(loss)
    changed = [not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True)]
    assert any(changed), "one training step changed no weight"
    probs = keras.ops.convert_to_numpy(model(x, training=False))
    assert probs.shape == (4, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)

    # Grad-CAM finds the last feature map inside the nested base and explains the prediction.
    cam = gradcam(model, x[0])
    assert cam.layer.startswith(base_model(model).name + "/")
    assert cam.heatmap.shape == (size, size)
    assert np.isfinite(cam.heatmap).all() and cam.heatmap.min() >= 0 and cam.heatmap.max() <= 1
    assert cam.overlay.shape == (size, size, 3) and cam.overlay.dtype == np.uint8
    assert cam.class_index == int(np.argmax(probs[0]))
    # Grad-CAM runs the model again layer by layer under a gradient tape, for one image, where
    # oneDNN may pick other kernels than for the batch of 4; in float32 a deep VGG16 then
    # differs from the plain call by a few 1e-5 (2.4e-5 seen in a fresh-clone run).
    assert cam.probability == pytest.approx(float(probs[0].max()), abs=1e-4)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_normalization_inside_the_model_equals_the_backbones_own_preprocess_input(
    name: str,
) -> None:
    entry = BACKBONES[name]
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    inside = keras.ops.convert_to_numpy(BackboneNormalization(entry.normalization)(x))
    own = np.asarray(entry.preprocess_input(x.copy()))
    np.testing.assert_allclose(inside, own, rtol=1e-5, atol=1e-4)


def test_each_entry_knows_its_input_size() -> None:
    assert BACKBONES["inceptionv3"].input_size == 299
    assert BACKBONES["efficientnetb0"].input_size == 224
    assert all(entry.input_size >= entry.min_size for entry in BACKBONES.values())
    default = build_classifier("mobilenetv2")
    assert default.input_shape == (None, 224, 224, 3)


def test_gray_input_is_repeated_to_rgb_for_imagenet_backbones() -> None:
    model = build_classifier("vgg16", input_shape=(32, 32, 1))
    names = [layer.name for layer in model.layers]
    assert "repeat_channels" in names
    assert base_model(model).input_shape == (None, 32, 32, 3)
    x = np.arange(2 * 4 * 4, dtype="float32").reshape(2, 4, 4, 1)
    repeated = keras.ops.convert_to_numpy(RepeatChannels(3)(x))
    assert repeated.shape == (2, 4, 4, 3)
    np.testing.assert_array_equal(repeated[..., 2], x[..., 0])


def test_custom_cnn_keeps_one_channel_and_follows_the_research_blocks() -> None:
    model = build_classifier("custom_cnn", input_shape=(64, 64, 1))
    base = base_model(model)
    assert base.input_shape == (None, 64, 64, 1)
    convs = [layer for layer in base.layers if isinstance(layer, keras.layers.Conv2D)]
    assert sorted({c.filters for c in convs}) == [32, 64, 128, 256]
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in base.layers)
    assert any(isinstance(layer, keras.layers.Dropout) for layer in base.layers)


def test_convs_per_block_can_differ_per_block() -> None:
    model = build_classifier(
        "custom_cnn",
        input_shape=(32, 32, 1),
        cnn=CnnSpec(filters=(8, 16, 32), convs_per_block=(1, 1, 2)),
    )
    convs = [
        layer.name for layer in base_model(model).layers if isinstance(layer, keras.layers.Conv2D)
    ]
    assert convs == ["block1_conv1", "block2_conv1", "block3_conv1", "block3_conv2"]
    with pytest.raises(ValueError, match="one per block"):
        CnnSpec(filters=(8, 16), convs_per_block=(1, 2, 3))


def test_head_is_configurable() -> None:
    model = build_classifier(
        "custom_cnn",
        input_shape=(32, 32, 1),
        head=HeadSpec(pooling="max", dropout=0.5, dense_units=64),
        cnn=CnnSpec(filters=(8, 16), convs_per_block=1),
        num_classes=3,
    )
    layers = {layer.name: layer for layer in model.layers}
    assert isinstance(layers["pool"], keras.layers.GlobalMaxPooling2D)
    assert layers["head_dense"].units == 64
    assert layers["head_dropout"].rate == 0.5
    assert model.output_shape == (None, 3)
    assert layers["predictions"].dtype_policy.name == "float32"
    flat = build_classifier(
        "custom_cnn",
        input_shape=(32, 32, 1),
        head=HeadSpec(pooling="flatten"),
        cnn=CnnSpec(filters=(8, 16)),
    )
    assert isinstance(flat.get_layer("pool"), keras.layers.Flatten)
    assert flat.get_layer("predictions").kernel.shape == (8 * 8 * 16, 4)
    with pytest.raises(ValueError, match="pooling"):
        HeadSpec(pooling="attention")


def _random_weights(model: keras.Model, seed: int) -> None:
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.05, w.shape).astype(w.dtype) for w in model.get_weights()])


@pytest.mark.parametrize("name", ["custom_cnn", "mobilenetv2"])
def test_weights_file_loads_the_saved_base_weights(name: str, tmp_path: Path) -> None:
    source = build_classifier(name, input_shape=(32, 32, 3))
    _random_weights(base_model(source), seed=7)
    path = tmp_path / f"{name}_base.weights.h5"
    base_model(source).save_weights(path)

    loaded = build_classifier(name, input_shape=(32, 32, 3), weights=path)
    for saved, got in zip(
        base_model(source).get_weights(), base_model(loaded).get_weights(), strict=True
    ):
        np.testing.assert_array_equal(saved, got)
    fresh = build_classifier(name, input_shape=(32, 32, 3), weights=None)
    assert not np.array_equal(
        base_model(fresh).get_weights()[0], base_model(source).get_weights()[0]
    )


def test_legacy_h5_weights_file_like_the_keras_imagenet_download(tmp_path: Path) -> None:
    """Keras' ImageNet `*_notop.h5` files are legacy HDF5: the path option must read them."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    source = build_classifier("mobilenetv2", input_shape=(32, 32, 3))
    _random_weights(base_model(source), seed=3)
    path = tmp_path / "mobilenet_v2_notop.h5"
    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, base_model(source))
    loaded = build_classifier("mobilenetv2", input_shape=(32, 32, 3), weights=str(path))
    np.testing.assert_array_equal(
        base_model(loaded).get_weights()[0], base_model(source).get_weights()[0]
    )


def test_missing_or_mismatched_weights_file_gives_an_actionable_error(tmp_path: Path) -> None:
    with pytest.raises(BackboneWeightsError, match="not found"):
        build_classifier("custom_cnn", input_shape=(32, 32, 1), weights=tmp_path / "nope.h5")
    other = build_classifier("custom_cnn", input_shape=(32, 32, 1), cnn=CnnSpec(filters=(8,)))
    path = tmp_path / "small.weights.h5"
    base_model(other).save_weights(path)
    with pytest.raises(BackboneWeightsError, match="does not fit"):
        build_classifier("custom_cnn", input_shape=(32, 32, 1), weights=path)


def test_imagenet_download_failure_says_how_to_work_offline(monkeypatch, tmp_path: Path) -> None:
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise OSError("URL fetch failure: no network")

    monkeypatch.setattr(file_utils, "get_file", offline)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(BackboneWeightsError, match=r"\*_notop.h5"):
        build_classifier("mobilenetv2", input_shape=(32, 32, 3), weights="imagenet")
    with pytest.raises(BackboneWeightsError, match="no ImageNet weights"):
        build_classifier("custom_cnn", input_shape=(32, 32, 1), weights="imagenet")


def test_bad_backbone_or_shape_is_rejected_clearly() -> None:
    with pytest.raises(BackboneError, match="unknown backbone"):
        build_classifier("alexnet")
    with pytest.raises(BackboneError, match="at least 75x75"):
        build_classifier("inceptionv3", input_shape=(64, 64, 3))
    with pytest.raises(BackboneError, match="channels must be 1 or 3"):
        build_classifier("vgg16", input_shape=(32, 32, 2))


def test_freeze_and_unfreeze_top_layers_keeps_batch_norm_frozen() -> None:
    model = build_classifier("mobilenetv2", input_shape=(32, 32, 3))
    freeze_base(model)
    base = base_model(model)
    assert base.trainable_weights == []
    assert model.trainable_weights  # the head still trains
    trainable = set_trainable_top(model, 10)
    assert 0 < trainable <= 10
    top = base.layers[-10:]
    assert all(not layer.trainable for layer in base.layers[:-10])
    assert all(
        layer.trainable != isinstance(layer, keras.layers.BatchNormalization) for layer in top
    )


def test_saved_model_reloads_in_safe_mode_with_identical_predictions(tmp_path: Path) -> None:
    model = build_classifier("mobilenetv2", input_shape=(32, 32, 1))
    path = tmp_path / "model.keras"
    model.save(path)
    again = keras.saving.load_model(path, safe_mode=True)
    x = np.random.default_rng(2).uniform(0, 255, (3, 32, 32, 1)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(x)), keras.ops.convert_to_numpy(again(x)), atol=1e-6
    )


def test_standardize_makes_the_cnn_blind_to_global_brightness_and_contrast() -> None:
    model = build_classifier(
        "custom_cnn", input_shape=(32, 32, 1), cnn=CnnSpec(input_normalization="standardize")
    )
    layer = model.get_layer("normalization")
    assert layer.mode == "standardize"
    x = np.random.default_rng(0).uniform(0, 120, (2, 32, 32, 1)).astype("float32")
    out = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), 0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=(1, 2, 3)), 1, atol=1e-3)
    other_scanner = 1.8 * x + 20  # brighter, more contrast
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(other_scanner)),
        keras.ops.convert_to_numpy(model(x)),
        atol=1e-4,
    )
    with pytest.raises(ValueError, match="input_normalization"):
        CnnSpec(input_normalization="zscore")


def test_from_scratch_backbones_get_the_faster_batch_norm_momentum(tmp_path: Path) -> None:
    scratch = build_classifier(
        "mobilenetv2", input_shape=(32, 32, 3), cnn=CnnSpec(batch_norm_momentum=0.8)
    )
    norms = [
        layer
        for layer in base_model(scratch).layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert norms and all(layer.momentum == 0.8 for layer in norms)
    path = tmp_path / "m.keras"
    scratch.save(path)
    again = keras.saving.load_model(path)
    assert all(
        layer.momentum == 0.8
        for layer in base_model(again).layers
        if isinstance(layer, keras.layers.BatchNormalization)
    )
    file = tmp_path / "base.weights.h5"
    base_model(scratch).save_weights(file)
    pretrained = build_classifier("mobilenetv2", input_shape=(32, 32, 3), weights=file)
    assert all(
        layer.momentum == 0.999
        for layer in base_model(pretrained).layers
        if isinstance(layer, keras.layers.BatchNormalization)
    )


def test_shift_class_logits_adds_to_the_softmax_bias() -> None:
    from braintumor.evaluation.calibration import shift_logits

    model = build_classifier(
        "custom_cnn", input_shape=(32, 32, 1), num_classes=4, weights=None, cnn=CnnSpec((8,))
    )
    x = np.random.default_rng(0).uniform(0, 255, (6, 32, 32, 1)).astype(np.float32)
    before = np.asarray(model(x, training=False), np.float64)
    shift = np.array([0.5, -1.0, 2.0, 0.0])
    shift_class_logits(model, shift)
    after = np.asarray(model(x, training=False), np.float64)
    np.testing.assert_allclose(after, shift_logits(before, shift), atol=1e-5)
    with pytest.raises(BackboneError, match="one shift per class"):
        shift_class_logits(model, [1.0, 2.0])
