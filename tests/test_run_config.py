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
        ({"backbones": ["custom_cnn"], "gate": {"min_weighted_f1": 0.5}}, "params.yaml `gate:`"),
        (
            {"backbones": ["custom_cnn"], "gate": {"policy_overrides": {"min_weighted_f1": -1}}},
            "min_weighted_f1",
        ),
        ({"backbones": ["custom_cnn"], "gate": {"promote_to": "prod"}}, "promote_to"),
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


ROOT = Path(__file__).resolve().parents[1]


def test_the_promotion_policy_is_declared_once_in_params_yaml() -> None:
    from braintumor.params import promotion_policy

    policy = promotion_policy(ROOT / "params.yaml")
    assert (policy.min_weighted_f1, policy.min_class_recall, policy.max_regression) == (
        0.90,
        0.85,
        0.005,
    )
    for path in CONFIGS:  # no profile restates a threshold; smoke overrides them openly
        gate = yaml.safe_load(path.read_text())["parameters"]["run"].get("gate", {})
        assert set(gate) <= {"promote_to", "exit_code_on_reject", "policy_overrides"}, path
        assert ("policy_overrides" in gate) == (path.stem == "smoke"), path


def test_the_smoke_profile_policy_is_not_the_repository_one() -> None:
    from braintumor.params import promotion_policy
    from braintumor.promotion import effective_policy

    run = RunConfig(
        **yaml.safe_load((ROOT / "configs" / "smoke.yaml").read_text())["parameters"]["run"]
    )
    smoke = effective_policy(promotion_policy(ROOT / "params.yaml"), run.gate.policy_overrides)
    assert not smoke.repository and smoke.policy.min_weighted_f1 == 0.0


def test_a_params_file_without_a_gate_is_refused(tmp_path: Path) -> None:
    from braintumor.params import promotion_policy

    (tmp_path / "params.yaml").write_text("clahe: {clip_limit: 2.0}\n")
    with pytest.raises(ValueError, match="no `gate:` section"):
        promotion_policy(tmp_path / "params.yaml")


def test_a_run_leaves_caching_to_each_step_unless_it_is_off() -> None:
    """ZenML applies a run-level `enable_cache` to every step, over the step's own
    `enable_cache=False`: a cached `promote` would leave the new version without a stage."""
    from braintumor_zenml.launch import run_document

    for path in CONFIGS:
        assert "enable_cache" not in yaml.safe_load(path.read_text()), path
    parameters = {"run": {}}
    on = run_document({"enable_cache": True, "parameters": {}}, parameters, enable_cache=True)
    assert "enable_cache" not in on and on["parameters"] == parameters
    assert run_document({}, parameters, enable_cache=False)["enable_cache"] is False
    assert (
        run_document({"enable_cache": False}, parameters, enable_cache=True)["enable_cache"]
        is False
    )
