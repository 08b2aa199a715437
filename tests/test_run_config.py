"""Run configs: every shipped profile validates, merging and refusals work, GPU requests
reach the orchestrators that need them spelled out."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from braintumor.run_config import RunConfig

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_profile_is_valid(path: Path) -> None:
    run = RunConfig(**yaml.safe_load(path.read_text())["parameters"]["run"])
    for backbone in run.backbones:
        config = run.training_config(backbone, {"clip_limit": 2.0, "tile_grid": 8})
        assert config.backbone == backbone


def test_profiles_cover_what_the_product_promises() -> None:
    names = {p.stem for p in CONFIGS}
    assert {"smoke", "cpu", "full"} <= names
    full = RunConfig(
        **yaml.safe_load((CONFIGS[0].parent / "full.yaml").read_text())["parameters"]["run"]
    )
    assert set(full.backbones) == {
        "vgg16",
        "resnet50",
        "inceptionv3",
        "efficientnetb0",
        "densenet121",
        "mobilenetv2",
        "custom_cnn",
    }
    assert full.training_config("vgg16").weights == "imagenet"
    assert full.training_config("inceptionv3").preprocessing.image_size == 299
    assert full.resources.gpu_count == 1


def test_overrides_merge_deeply_and_clahe_comes_from_params() -> None:
    run = RunConfig(
        backbones=["custom_cnn", "mobilenetv2"],
        training={"epochs": 3, "preprocessing": {"image_size": 64, "variant": "clahe"}},
        overrides={"mobilenetv2": {"preprocessing": {"channels": 3}}},
    )
    config = run.training_config("mobilenetv2", {"clip_limit": 3.5, "tile_grid": 4})
    assert config.epochs == 3 and config.preprocessing.image_size == 64
    assert config.preprocessing.channels == 3 and config.preprocessing.variant == "clahe"
    assert (
        config.preprocessing.clahe_clip_limit == 3.5 and config.preprocessing.clahe_tile_grid == 4
    )
    assert run.training_config("custom_cnn").preprocessing.channels == 1


@pytest.mark.parametrize(
    ("run", "message"),
    [
        ({"backbones": []}, "at least 1"),
        ({"backbones": ["custom_cnn", "custom_cnn"]}, "twice"),
        ({"backbones": ["alexnet"]}, "unknown backbone"),
        ({"backbones": ["custom_cnn"], "overrides": {"vgg16": {}}}, "not run"),
        (
            {"backbones": ["custom_cnn"], "training": {"preprocessing": {"clahe_clip_limit": 3}}},
            "params.yaml",
        ),
        ({"backbones": ["custom_cnn"], "training": {"epochs": 0}}, "epochs"),
        ({"backbones": ["custom_cnn"], "gate": {"min_weighted_f1": -1}}, "min_weighted_f1"),
        ({"backbones": ["custom_cnn"], "resources": {"memory": "lots"}}, "memory"),
    ],
)
def test_bad_run_configs_are_refused_with_the_reason(run: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RunConfig(**run)


def test_train_step_resources_go_to_resource_settings_and_kubernetes_pod_settings() -> None:
    from pipelines.training import training_step_settings

    assert training_step_settings(RunConfig(backbones=["custom_cnn"])) == {}
    settings = training_step_settings(
        RunConfig(
            backbones=["custom_cnn"], resources={"gpu_count": 1, "cpu_count": 4, "memory": "16Gi"}
        )
    )
    resources = settings["resources"]
    assert (resources.gpu_count, resources.cpu_count, resources.memory) == (1, 4, "16GiB")
    pod = settings["orchestrator.kubernetes"]["pod_settings"]["resources"]
    assert pod["limits"] == pod["requests"] == {"nvidia.com/gpu": "1", "cpu": "4", "memory": "16Gi"}
    assert set(settings) == {"resources", "orchestrator.kubernetes"}


@pytest.mark.parametrize(
    ("quantity", "zenml"),
    [
        ("16Gi", "16GiB"),
        ("512Mi", "512MiB"),
        ("1.5Gi", "1572864KiB"),
        ("2G", "2GB"),
        ("1.5G", "1500000000B"),
        ("1000", "1000B"),
        (None, None),
    ],
)
def test_memory_quantities_convert_to_zenml_s_format(
    quantity: str | None, zenml: str | None
) -> None:
    from pipelines.training import zenml_memory

    assert zenml_memory(quantity) == zenml
