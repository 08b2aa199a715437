"""The predictor: calibration and review rules, backend choice, the serving graph's parity
with Keras (probabilities and Grad-CAM), load-time contract checks, and preprocessing parity
between training and serving."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from braintumor.evaluation.calibration import calibrate
from braintumor.imaging import decode_image
from braintumor.preprocessing import load_and_preprocess, preprocess
from braintumor.serving.metadata import ModelCard
from braintumor.serving.predictor import (
    CARD_FILE,
    INT8_FILE,
    ONNX_FILE,
    ModelLoadError,
    Predictor,
    choose_backend,
    needs_review,
    read_card,
    top_class,
)
from braintumor.serving.uploads import UploadLimits, read_upload_with_digest
from tests.serving.helpers import export_onnx, tiny_spec


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


def test_backend_choice_prefers_the_fastest_onnx_graph_present(tmp_path):
    with pytest.raises(ModelLoadError, match="holds no ONNX serving graph"):
        choose_backend(tmp_path)
    (tmp_path / "model.keras").write_bytes(b"k")  # a Keras file alone is not servable
    with pytest.raises(ModelLoadError, match="holds no ONNX serving graph"):
        choose_backend(tmp_path)
    with pytest.raises(ModelLoadError, match="'onnx' asked for"):
        choose_backend(tmp_path, "onnx")
    (tmp_path / ONNX_FILE).write_bytes(b"o")
    assert choose_backend(tmp_path) == "onnx"
    (tmp_path / INT8_FILE).write_bytes(b"q")
    assert choose_backend(tmp_path) == "onnx-int8"
    assert choose_backend(tmp_path, "onnx") == "onnx"
    with pytest.raises(ValueError, match="backend must be one of"):
        choose_backend(tmp_path, "keras")


def test_serving_graph_answers_like_the_keras_model(packaged, sample_arrays):
    x, _, _ = sample_arrays
    expected = np.asarray(packaged.keras_model(x, training=False))
    onnx = Predictor(packaged.model_dir)  # card read from card.json
    assert onnx.backend == "onnx"
    out = onnx.infer(x)
    np.testing.assert_allclose(out.probabilities, expected, atol=1e-5)
    np.testing.assert_allclose(softmax(out.logits), expected, atol=1e-5)
    assert out.embedding.shape == (len(x), 32)  # the pooled features of the tiny CNN
    assert onnx.predict(x[:0]).shape == (0, 4)


def test_the_temperature_is_inside_the_serving_graph(
    tmp_path, tiny_model, tiny_card, sample_arrays
):
    x, _, _ = sample_arrays
    hot = tiny_card.model_copy(update={"temperature": 3.0})
    folder = model_dir_with(tmp_path, tiny_model, hot, temperature=3.0)
    scaled = Predictor(folder).predict(x)
    plain = np.asarray(tiny_model(x, training=False))
    np.testing.assert_allclose(scaled, calibrate(plain, 3.0), atol=1e-5)
    assert scaled.max(axis=1).mean() < plain.max(axis=1).mean()


def test_sessions_use_the_asked_threads_and_do_not_spin(tiny_onnx):
    """Several workers' sessions share few cores: idle pool threads must sleep, or spinning
    ones take the cores the other workers' requests need."""
    from braintumor.serving.predictor import onnx_session

    options = onnx_session(tiny_onnx, threads=2).get_session_options()
    assert options.intra_op_num_threads == 2
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_predictor_refuses_a_batch_of_the_wrong_shape(packaged):
    predictor = Predictor(packaged.model_dir)
    with pytest.raises(ValueError, match=r"expected a batch of shape \(N, 64, 64, 1\)"):
        predictor.predict(np.zeros((2, 32, 32, 1), dtype=np.float32))


def model_dir_with(tmp_path, model, card: ModelCard, temperature: float = 1.0):
    export_onnx(model, tmp_path / ONNX_FILE, temperature=temperature)
    (tmp_path / CARD_FILE).write_text(json.dumps(card.to_metadata()))
    return tmp_path


def test_card_with_other_classes_than_the_model_is_refused(tmp_path, tiny_model, tiny_card):
    # A binary card on the four-class model.
    binary = tiny_card.model_copy(update={"task": "binary", "class_names": ("notumor", "tumour")})
    folder = model_dir_with(tmp_path, tiny_model, binary)
    with pytest.raises(ModelLoadError, match="names 2 classes"):
        Predictor(folder, read_card(folder))


def test_a_plain_onnx_export_is_refused_as_no_serving_graph(tmp_path, tiny_model, tiny_card):
    from braintumor.models.export import to_onnx

    to_onnx(tiny_model, tmp_path / ONNX_FILE)  # probabilities only, as packaged before
    (tmp_path / CARD_FILE).write_text(json.dumps(tiny_card.to_metadata()))
    with pytest.raises(ModelLoadError, match=r"not a serving graph.*package the model again"):
        Predictor(tmp_path)
    with pytest.raises(ModelLoadError, match=r"card\.json is missing"):
        read_card(tmp_path / "nowhere")


def test_onnx_gradcam_matches_keras_gradcam_on_the_sample_images(packaged, sample_arrays):
    """Grad-CAM from the ONNX graph (feature map and channel weights as outputs) against
    Keras' GradientTape Grad-CAM, for every class of every sample image."""
    from braintumor.evaluation.gradcam import gradcam

    x, _, _ = sample_arrays
    predictor = Predictor(packaged.model_dir)
    correlations = []
    for image in x:
        for index in range(4):
            expected = gradcam(packaged.keras_model, image, class_index=index).heatmap
            got = predictor.explain(image, class_index=index)
            assert got.shape == expected.shape == (64, 64)
            if expected.std() == 0:  # a map with no positive evidence: both all zero
                np.testing.assert_allclose(got, expected, atol=1e-6)
                continue
            correlations.append(np.corrcoef(expected.ravel(), got.ravel())[0, 1])
    assert len(correlations) > len(x)  # most maps are not empty
    assert min(correlations) >= 0.99, min(correlations)
    with pytest.raises(ValueError, match="class_index 4 outside"):
        predictor.explain(x[0], class_index=4)


def test_explanations_use_the_float_graph_when_int8_serves(tmp_path, packaged, sample_arrays):
    x, _, _ = sample_arrays
    folder = tmp_path / "int8"
    shutil.copytree(packaged.model_dir, folder)
    shutil.copyfile(folder / ONNX_FILE, folder / INT8_FILE)  # stands in for a quantized graph
    predictor = Predictor(folder)
    assert predictor.backend == "onnx-int8" and predictor._explainer is None
    heatmap = predictor.explain(x[0], class_index=0)
    assert predictor._explainer is not None and heatmap.shape == (64, 64)
    (folder / ONNX_FILE).unlink()
    fresh = Predictor(folder)
    with pytest.raises(ModelLoadError, match=r"model\.onnx is missing"):
        fresh.explain(x[0], class_index=0)


def test_serving_and_training_preprocessing_give_equal_tensors(sample_arrays):
    """The parity the product promises: an upload becomes exactly the tensor training used."""
    _, _, paths = sample_arrays
    spec = tiny_spec()
    for path in paths:
        decoded, _ = read_upload_with_digest(path.read_bytes(), UploadLimits())
        served = preprocess(decoded.pixels, spec)
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


def test_the_answer_gives_the_binary_view_of_the_four_class_probabilities() -> None:
    from braintumor.constants import CLASS_NAMES
    from braintumor.serving.schemas import make_prediction

    answer = make_prediction([0.1, 0.2, 0.6, 0.1], CLASS_NAMES, 0.6, "1", "t", request_id="r")
    assert answer.label == "notumor" and answer.tumour_probability == pytest.approx(0.4)
    other = make_prediction([0.7, 0.3], ("cat", "dog"), 0.6, "1", "t", request_id="r")
    assert other.tumour_probability is None
