"""The model card and the serving configuration: validation at the edge, round trips."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from braintumor.preprocessing import PreprocessSpec
from braintumor.serving.config import DEFAULT_REVIEW_THRESHOLD, ServingConfig
from braintumor.serving.metadata import ModelCard
from braintumor.serving.uploads import UploadLimits


def card(**changes) -> ModelCard:
    values = {
        "preprocessing": PreprocessSpec(image_size=128, channels=1, variant="clahe").to_dict(),
        "backbone": "custom_cnn",
        "model_version": "3",
    }
    return ModelCard(**{**values, **changes})


def test_card_round_trips_through_bentoml_style_metadata():
    original = card(
        metrics={"weighted_f1": 0.93},
        metrics_by_source={"kaggle": {"weighted_f1": 0.95, "images": 300.0}},
        data_hash="abc",
        stage="staging",
    )
    metadata = original.to_metadata()
    json.dumps(metadata)  # plain JSON types only
    assert None not in metadata.values()  # BentoML refuses None in metadata
    assert "git_commit" not in metadata
    assert ModelCard.from_metadata(metadata) == original


def test_card_gives_the_training_spec_back():
    spec = card().spec
    assert spec == PreprocessSpec(image_size=128, channels=1, variant="clahe")
    assert card().input_shape == (128, 128, 1)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"preprocessing": {"image_size": 128, "colour": "red"}}, "unknown preprocessing"),
        ({"preprocessing": {"variant": "sharpen"}}, "variant"),
        ({"stage": "prod"}, "stage must be one of"),
        ({"class_names": ("a", "a")}, "distinct"),
        ({"metrics": {"weighted_f1": float("nan")}}, "finite"),
        ({"metrics_by_source": {"b": {"weighted_f1": float("inf")}}}, "finite"),
        ({"temperature": 0.0}, "temperature"),
        ({"review_threshold": 0.1}, "between 1/4"),
        ({"unexpected": 1}, "Extra inputs"),
    ],
)
def test_card_refuses_bad_values_with_a_reason(changes, message):
    with pytest.raises(ValidationError, match=message):
        card(**changes)


def test_config_defaults_and_environment():
    assert ServingConfig.from_env({}) == ServingConfig()
    config = ServingConfig.from_env(
        {
            "BRAINTUMOR_MODEL_TAG": "brain-tumor-classifier:abc",
            "BRAINTUMOR_REVIEW_THRESHOLD": "0.8",
            "BRAINTUMOR_BACKEND": "onnx",
            "BRAINTUMOR_WORKERS": "3",
            "BRAINTUMOR_REJECT_NOT_MRI": "true",
            "BRAINTUMOR_MAX_UPLOAD_BYTES": "1000",
            "BRAINTUMOR_MAX_PIXELS": "50",
            "BRAINTUMOR_MAX_REQUEST_BYTES": "5000",
        }
    )
    assert config.model_tag == "brain-tumor-classifier:abc"
    assert config.review_threshold == 0.8 and config.backend == "onnx" and config.workers == 3
    assert config.reject_not_mri is True and ServingConfig().reject_not_mri is False
    assert config.limits == UploadLimits(max_bytes=1000, max_pixels=50, max_request_bytes=5000)


@pytest.mark.parametrize(
    "env, message",
    [
        ({"BRAINTUMOR_BACKEND": "tensorrt"}, "BRAINTUMOR_BACKEND must be one of"),
        ({"BRAINTUMOR_BACKEND": "keras"}, "BRAINTUMOR_BACKEND must be one of"),
        ({"BRAINTUMOR_WORKERS": "0"}, "greater than or equal to 1"),
        ({"BRAINTUMOR_MAX_PIXELS": "many"}, "BRAINTUMOR_MAX_PIXELS must be a whole number"),
    ],
)
def test_config_refuses_bad_environment(env, message):
    with pytest.raises(ValueError, match=message):
        ServingConfig.from_env(env)


def test_review_threshold_precedence_config_then_card_then_default():
    assert ServingConfig().threshold_for(card()) == DEFAULT_REVIEW_THRESHOLD
    assert ServingConfig().threshold_for(card(review_threshold=0.7)) == 0.7
    assert ServingConfig(review_threshold=0.9).threshold_for(card(review_threshold=0.7)) == 0.9
    with pytest.raises(ValueError, match="between 1/4"):
        ServingConfig(review_threshold=0.2).threshold_for(card())


def test_card_says_the_task_and_its_classes():
    four = card()
    assert four.task == "four_class" and four.class_names == (
        "glioma",
        "meningioma",
        "notumor",
        "pituitary",
    )
    binary = card(task="binary")
    assert binary.class_names == ("notumor", "tumour")  # the task's classes
    assert ModelCard.from_metadata(binary.to_metadata()) == binary
    assert binary.to_metadata()["task"] == "binary"
    # A card written before the task existed reads as four-class.
    old = {k: v for k, v in four.to_metadata().items() if k != "task"}
    assert ModelCard.from_metadata(old).task == "four_class"
    with pytest.raises(ValidationError, match="a binary model's class_names are"):
        card(task="binary", class_names=("glioma", "notumor"))
    with pytest.raises(ValidationError, match="a four_class model's class_names are"):
        card(class_names=("notumor", "tumour"))
    with pytest.raises(ValidationError, match="unknown task"):
        card(task="three_class")
