"""Grad-CAM points at the evidence: a bright blob that decides the class."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from braintumor.evaluation.gradcam import GradCamError, find_target_layer, gradcam, overlay_heatmap
from braintumor.models.backbones import CnnSpec, HeadSpec, build_classifier

SIZE, RADIUS = 64, 5


def blob_images(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noisy dark images; class 1 carries one bright disc at a random place, class 0 none."""
    x = rng.normal(60, 20, (n, SIZE, SIZE, 1)).clip(0, 255)
    y = rng.integers(0, 2, n)
    centres = rng.integers(RADIUS + 2, SIZE - RADIUS - 2, (n, 2))
    rows, cols = np.mgrid[:SIZE, :SIZE]
    for i in np.flatnonzero(y == 1):
        disc = (rows - centres[i, 0]) ** 2 + (cols - centres[i, 1]) ** 2 <= RADIUS**2
        x[i, disc, 0] = 230
    return x.astype("float32"), y, centres


@pytest.fixture(scope="module")
def blob_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    x, y, _ = blob_images(256, np.random.default_rng(0))
    model = build_classifier(
        "custom_cnn",
        input_shape=(SIZE, SIZE, 1),
        num_classes=2,
        cnn=CnnSpec(filters=(8, 16, 32), convs_per_block=1, block_dropout=0.0),
        head=HeadSpec(dropout=0.0),
    )
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=False,
    )
    history = model.fit(x, np.eye(2)[y], epochs=6, batch_size=32, verbose=0)
    assert history.history["accuracy"][-1] > 0.95, "the blob task was not learned"
    return model


def test_heatmap_is_highest_on_the_blob_that_decides_the_class(blob_model) -> None:
    x, y, centres = blob_images(24, np.random.default_rng(1))
    rows, cols = np.mgrid[:SIZE, :SIZE]
    checked = 0
    for i in np.flatnonzero(y == 1)[:6]:
        cam = gradcam(blob_model, x[i], class_index=1)
        peak = np.unravel_index(np.argmax(cam.heatmap), cam.heatmap.shape)
        distance = np.hypot(peak[0] - centres[i, 0], peak[1] - centres[i, 1])
        assert distance <= RADIUS + 2, f"peak {peak} is {distance:.1f} px from {centres[i]}"
        disc = (rows - centres[i, 0]) ** 2 + (cols - centres[i, 1]) ** 2 <= RADIUS**2
        assert cam.heatmap[disc].mean() > 5 * cam.heatmap[~disc].mean()
        checked += 1
    assert checked >= 3


def test_target_layer_is_the_last_feature_map_inside_the_nested_base(blob_model) -> None:
    path = find_target_layer(blob_model)
    assert [layer.name for layer in path] == ["custom_cnn", "block3_relu1"]


def test_wrong_image_shape_and_non_cnn_models_are_rejected(blob_model) -> None:
    with pytest.raises(GradCamError, match="expected one image"):
        gradcam(blob_model, np.zeros((32, 32, 1), "float32"))
    with pytest.raises(GradCamError, match="class_index"):
        gradcam(blob_model, np.zeros((SIZE, SIZE, 1), "float32"), class_index=5)
    inputs = keras.Input((8,))
    dense = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    with pytest.raises(GradCamError, match="no convolutional feature map"):
        find_target_layer(dense)


def test_overlay_blends_the_heatmap_over_the_grayscale_image() -> None:
    image = np.full((16, 16, 1), 100, np.float32)
    cold = overlay_heatmap(image, np.zeros((16, 16), np.float32), alpha=0.5)
    hot = overlay_heatmap(image, np.ones((16, 16), np.float32), alpha=0.5)
    assert cold.shape == (16, 16, 3) and cold.dtype == np.uint8
    assert not np.array_equal(cold, hot)
    unblended = overlay_heatmap(image, np.ones((16, 16), np.float32), alpha=0.0)
    assert (unblended == 100).all()
