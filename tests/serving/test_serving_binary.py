"""A binary model (tumour vs no tumour) served in-process: the service takes its classes from
the card, answers two probabilities and `tumour_probability`, conformal sets of those two,
Grad-CAM, and /metadata says the task."""

from __future__ import annotations

import numpy as np
import pytest

from braintumor.constants import BINARY_CLASS_NAMES
from braintumor.preprocessing import load_and_preprocess
from tests.serving.helpers import (
    build_tiny_model,
    export_onnx,
    load_service,
    sample_guard,
    tiny_spec,
)


@pytest.fixture(scope="module")
def binary_packaged(bentoml_home, sample_arrays, tmp_path_factory):
    """A tiny two-class model trained on the sample's binary labels, with its guard fitted
    as the pipeline fits it, in the model store under a binary card."""
    import keras

    from braintumor.constants import CLASS_NAMES
    from braintumor.serving.metadata import ModelCard
    from braintumor.serving.store import save_to_bentoml
    from braintumor.training.dataset import label_indices

    x, y4, paths = sample_arrays
    y = label_indices([CLASS_NAMES[i] for i in y4], BINARY_CLASS_NAMES)
    model = build_tiny_model(n_classes=2)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=4, batch_size=8, verbose=0)
    guard, detector = sample_guard(model, x, y, paths, BINARY_CLASS_NAMES)
    card = ModelCard(
        task="binary",
        preprocessing=tiny_spec().to_dict(),
        backbone="tiny_cnn",
        model_version="11",
        guard=guard,
    )
    onnx = export_onnx(model, tmp_path_factory.mktemp("binary-onnx") / "model.onnx")
    tag = save_to_bentoml(model, card, onnx_path=onnx, detector=detector)
    return tag, model


@pytest.fixture(scope="module")
def service(binary_packaged):
    """The service class called directly: BentoML registers its Prometheus metrics once per
    process, and the four-class tests build the process's one ASGI app."""
    module = load_service({"BRAINTUMOR_MODEL_TAG": binary_packaged[0]})
    return module.BrainTumorClassifier()


def test_binary_model_answers_two_classes_and_the_tumour_probability(
    service, binary_packaged, sample_arrays
):
    tag, model = binary_packaged
    _, _, paths = sample_arrays
    for path in paths[::4]:
        body = service.predict(image=path.read_bytes()).model_dump()
        assert list(body["probabilities"]) == ["notumor", "tumour"]
        assert body["label"] in BINARY_CLASS_NAMES and body["model_tag"] == tag
        assert body["tumour_probability"] == pytest.approx(body["probabilities"]["tumour"])
        assert set(body["prediction_set"]) <= set(BINARY_CLASS_NAMES)
        expected = np.asarray(model(load_and_preprocess(path, tiny_spec())[None]))[0]
        np.testing.assert_allclose(
            [body["probabilities"][n] for n in BINARY_CLASS_NAMES], expected, atol=2e-5
        )


def test_binary_model_explains_and_its_metadata_says_binary(service, sample_arrays):
    _, _, paths = sample_arrays
    body = service.explain(image=paths[0].read_bytes()).model_dump()
    assert body["explained_class"] == body["label"] in BINARY_CLASS_NAMES
    assert body["overlay_png"] and body["input_png"]
    metadata = service.describe()
    assert metadata["task"] == "binary" and list(metadata["class_names"]) == ["notumor", "tumour"]
    assert metadata["model_version"] == "11"
    batch = service.predict_batch(images=[p.read_bytes() for p in paths[:3]])
    assert [len(item.prediction.probabilities) for item in batch] == [2, 2, 2]
