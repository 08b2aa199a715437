"""The predictor: calibration and review rules, backend choice, ONNX/Keras parity, load-time
contract checks, and preprocessing parity between training and serving."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from braintumor.imaging import decode_image
from braintumor.preprocessing import load_and_preprocess, preprocess
from braintumor.serving.metadata import ModelCard
from braintumor.serving.predictor import (
    CARD_FILE,
    INT8_FILE,
    MODEL_FILE,
    ONNX_FILE,
    ModelLoadError,
    Predictor,
    calibrate,
    choose_backend,
    needs_review,
    read_card,
    top_class,
)
from braintumor.serving.uploads import UploadLimits, read_upload
from tests.serving.helpers import tiny_spec


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def test_temperature_one_leaves_probabilities_unchanged():
    probs = np.array([[0.7, 0.1, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25]])
    np.testing.assert_allclose(calibrate(probs, 1.0), probs)


def test_temperature_scaling_equals_dividing_the_logits():
    logits = np.array([[3.0, 1.0, 0.5, -1.0], [0.2, 2.5, 0.1, 0.0]])
    for temperature in (0.5, 2.0, 3.7):
        np.testing.assert_allclose(
            calibrate(softmax(logits), temperature), softmax(logits / temperature), atol=1e-9
        )


def test_higher_temperature_softens_but_keeps_the_ranking():
    probs = softmax(np.array([[4.0, 1.0, 0.0, -2.0]]))
    softer = calibrate(probs, 2.5)
    assert softer.max() < probs.max()
    assert (np.argsort(softer) == np.argsort(probs)).all()


def test_needs_review_fires_only_below_the_threshold():
    assert needs_review([0.59, 0.2, 0.1, 0.11], 0.6)
    assert not needs_review([0.6, 0.2, 0.1, 0.1], 0.6)
    assert not needs_review([0.97, 0.01, 0.01, 0.01], 0.6)
    assert top_class([0.1, 0.6, 0.2, 0.1], ("a", "b", "c", "d")) == ("b", 0.6)


def test_backend_choice_prefers_the_fastest_file_present(tmp_path):
    with pytest.raises(ModelLoadError, match="holds none of"):
        choose_backend(tmp_path)
    (tmp_path / MODEL_FILE).write_bytes(b"k")
    assert choose_backend(tmp_path) == "keras"
    with pytest.raises(ModelLoadError, match="'onnx' asked for"):
        choose_backend(tmp_path, "onnx")
    (tmp_path / ONNX_FILE).write_bytes(b"o")
    assert choose_backend(tmp_path) == "onnx"
    (tmp_path / INT8_FILE).write_bytes(b"q")
    assert choose_backend(tmp_path) == "onnx-int8"
    assert choose_backend(tmp_path, "keras") == "keras"
    assert choose_backend(tmp_path, "onnx") == "onnx"
    with pytest.raises(ValueError, match="backend must be one of"):
        choose_backend(tmp_path, "tflite")


def test_onnx_and_keras_backends_agree_with_the_keras_model(packaged, sample_arrays):
    x, _, _ = sample_arrays
    expected = np.asarray(packaged.keras_model(x, training=False))
    onnx = Predictor(packaged.model_dir)  # card read from card.json
    keras_backend = Predictor(packaged.model_dir, packaged.card, backend="keras")
    assert onnx.backend == "onnx" and keras_backend.backend == "keras"
    np.testing.assert_allclose(onnx.predict(x), expected, atol=1e-5)
    np.testing.assert_allclose(keras_backend.predict(x), expected, atol=1e-5)
    assert onnx.predict(x[:0]).shape == (0, 4)


def test_predictor_applies_the_card_temperature(packaged, sample_arrays):
    x, _, _ = sample_arrays
    hot = packaged.card.model_copy(update={"temperature": 3.0})
    plain = Predictor(packaged.model_dir).predict(x)
    scaled = Predictor(packaged.model_dir, hot).predict(x)
    np.testing.assert_allclose(scaled, calibrate(plain, 3.0), atol=1e-6)
    assert scaled.max(axis=1).mean() < plain.max(axis=1).mean()


def test_predictor_refuses_a_batch_of_the_wrong_shape(packaged):
    predictor = Predictor(packaged.model_dir)
    with pytest.raises(ValueError, match=r"expected a batch of shape \(N, 64, 64, 1\)"):
        predictor.predict(np.zeros((2, 32, 32, 1), dtype=np.float32))


def model_dir_with(tmp_path, model, card: ModelCard):
    model.save(tmp_path / MODEL_FILE)
    (tmp_path / CARD_FILE).write_text(json.dumps(card.to_metadata()))
    return tmp_path


def test_card_with_other_classes_than_the_model_is_refused(tmp_path, tiny_model, tiny_card):
    three = tiny_card.model_copy(update={"class_names": ("glioma", "meningioma", "pituitary")})
    folder = model_dir_with(tmp_path, tiny_model, three)
    with pytest.raises(ModelLoadError, match="names 3 classes"):
        Predictor(folder, read_card(folder))


def test_model_without_softmax_is_refused(tmp_path, tiny_card):
    import keras

    inputs = keras.Input((64, 64, 1))
    outputs = keras.layers.Dense(4)(keras.layers.Flatten()(inputs))  # logits, not probabilities
    folder = model_dir_with(tmp_path, keras.Model(inputs, outputs), tiny_card)
    with pytest.raises(ModelLoadError, match="softmax"):
        Predictor(folder)


def test_missing_card_and_missing_keras_file_for_gradcam(tmp_path, packaged):
    with pytest.raises(ModelLoadError, match=r"card\.json is missing"):
        read_card(tmp_path)
    onnx_only = tmp_path / "onnx_only"
    onnx_only.mkdir()
    for name in (ONNX_FILE, CARD_FILE):
        shutil.copyfile(packaged.model_dir / name, onnx_only / name)
    predictor = Predictor(onnx_only)
    with pytest.raises(ModelLoadError, match="needed for Grad-CAM"):
        _ = predictor.keras_model


def test_serving_and_training_preprocessing_give_equal_tensors(sample_arrays):
    """The parity the product promises: an upload becomes exactly the tensor training used."""
    _, _, paths = sample_arrays
    spec = tiny_spec()
    for path in paths:
        served = preprocess(read_upload(path.read_bytes(), UploadLimits()).pixels, spec)
        trained = load_and_preprocess(path, spec)
        assert served.dtype == trained.dtype == np.float32
        np.testing.assert_array_equal(served, trained)


GOLDEN = "golden_preprocess.json"


def test_preprocessing_matches_the_golden_tensors(sample_dir):
    """Tensors of four real slices, stored when the serving tests were written: a change of
    decoding or preprocessing that would silently invalidate packaged models fails here.
    Regenerate (after checking the change is intended) with
    `python -m tests.serving.make_golden`."""
    from tests.serving.make_golden import GOLDEN_PATH, golden_tensors

    stored = json.loads(GOLDEN_PATH.read_text())
    current = golden_tensors(sample_dir)
    assert stored.keys() == current.keys()
    for name, entry in stored.items():
        now = np.asarray(current[name]["tensor"], dtype=np.float32)
        before = np.asarray(entry["tensor"], dtype=np.float32)
        assert now.shape == before.shape, name
        # One grey level of slack for OpenCV/Pillow resampling differences across versions.
        assert np.abs(now - before).max() <= 1.0, name


def test_decoded_upload_of_a_dicom_goes_through_the_same_preprocessing():
    from pydicom.data import get_testdata_file

    data = open(get_testdata_file("MR_small.dcm"), "rb").read()  # noqa: SIM115
    tensor = preprocess(decode_image(data).pixels, tiny_spec())
    assert tensor.shape == (64, 64, 1) and tensor.dtype == np.float32
    assert tensor.min() >= 0 and tensor.max() <= 255


def test_explainer_warm_up_loads_the_keras_model_for_an_onnx_predictor(packaged):
    from braintumor.serving.explain import warm_up

    predictor = Predictor(packaged.model_dir)
    assert predictor.backend != "keras" and predictor._keras_model is None
    warm_up(predictor)
    assert predictor._keras_model is not None
