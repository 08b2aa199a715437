"""TrainingConfig: validated once, clear errors, plain specs out."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from braintumor.preprocessing import PreprocessSpec
from braintumor.training.augment import AugmentSpec
from braintumor.training.config import TrainingConfig


def test_defaults_are_the_cpu_friendly_from_scratch_cnn() -> None:
    config = TrainingConfig()
    assert config.backbone == "custom_cnn" and config.weights is None
    assert not config.pretrained
    assert config.balancing.strategy == "class_weight"
    assert isinstance(config.preprocessing, PreprocessSpec)
    assert config.input_shape() == (128, 128, 1)
    assert isinstance(config.augmentation.spec(), AugmentSpec)


def test_from_a_yaml_like_dict() -> None:
    config = TrainingConfig.model_validate(
        {
            "backbone": "efficientnetb0",
            "weights": "ImageNet",
            "preprocessing": {"image_size": 224, "channels": 3, "variant": "clahe"},
            "head": {"pooling": "max", "dropout": 0.2, "dense_units": 128},
            "fine_tune": {"epochs": 5, "unfreeze_top_layers": 20, "learning_rate": 1e-5},
            "balancing": {"strategy": "smote", "target_ratio": 0.85, "focal": {"enabled": True}},
            "augmentation": {"enabled": False},
        }
    )
    assert config.weights == "imagenet" and config.pretrained
    assert config.preprocessing.variant == "clahe"
    assert config.head.spec().dense_units == 128
    assert config.augmentation.spec() is None
    for null in (None, "null", "None", ""):
        assert TrainingConfig(weights=null).weights is None


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"backbone": "alexnet"}, "unknown backbone"),
        ({"weights": "imagenet"}, "no ImageNet weights"),
        ({"weights": "/nowhere/base.weights.h5"}, "not found"),
        ({"backbone": "inceptionv3", "preprocessing": {"image_size": 64}}, "image_size >= 75"),
        ({"balancing": {"strategy": "undersample"}}, "strategy"),
        ({"batch_size": 0}, "batch_size"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"preprocessing": {"channels": 2}}, "channels"),
        ({"epochs": 3, "epoch": 4}, "epoch"),  # typos are caught, not ignored
        ({"augmentation": {"invert_probability": 1.5}}, "invert_probability"),
        ({"augmentation": {"histogram_match_probability": -0.1}}, "histogram_match"),
        ({"augmentation": {"bias_field_order": 0}}, "bias_field_order"),
        ({"augmentation": {"bias_field_coefficients": 0}}, "bias_field_coefficients"),
        ({"augmentation": {"head_threshold": 255}}, "head_threshold"),
    ],
)
def test_bad_values_fail_with_a_message_naming_the_problem(values: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TrainingConfig.model_validate(values)


def test_weights_path_must_exist(tmp_path: Path) -> None:
    path = tmp_path / "base.weights.h5"
    path.write_bytes(b"x")
    assert TrainingConfig(weights=path).weights == str(path)


def test_appearance_augmentation_is_off_by_default_and_passes_through() -> None:
    spec = TrainingConfig().augmentation.spec()
    assert spec is not None and not spec.needs_head_mask
    config = TrainingConfig.model_validate(
        {
            "augmentation": {
                "intensity_curve_probability": 0.3,
                "intensity_curve_head_only": True,
                "invert_probability": 0.2,
                "histogram_match_probability": 0.25,
                "bias_field_probability": 0.5,
                "bias_field_order": 2,
                "bias_field_coefficients": 0.2,
                "head_threshold": 15,
            }
        }
    )
    spec = config.augmentation.spec()
    assert spec is not None and spec.needs_head_mask
    assert (spec.invert_probability, spec.histogram_match_probability) == (0.2, 0.25)
    assert (spec.bias_field_order, spec.bias_field_coefficients) == (2, 0.2)
    assert spec.intensity_curve_head_only and spec.head_threshold == 15


def test_importing_the_run_config_imports_no_tensorflow() -> None:
    """Validating a run config (the CLI's edge, the pipeline's build) needs no TensorFlow."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from braintumor.run_config import RunConfig\n"
        "RunConfig(backbones=['custom_cnn', 'mobilenetv2'])\n"
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "[]"


def test_the_backbone_facts_and_the_registry_agree() -> None:
    from braintumor.models.backbones import BACKBONES
    from braintumor.models.specs import BACKBONE_INFO

    assert set(BACKBONES) == set(BACKBONE_INFO)
    for name, info in BACKBONE_INFO.items():
        entry = BACKBONES[name]
        assert (entry.input_size, entry.min_size, entry.pretrained) == (
            info.input_size,
            info.min_size,
            info.pretrained,
        )
        assert entry.needs_rgb == info.needs_rgb and callable(entry.build_base)
