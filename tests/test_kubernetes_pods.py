"""The pods ZenML's Kubernetes orchestrator would start for the training pipeline, offline:
each train_<backbone> pod requests the run config's GPU, CPU and memory; no other pod gets a
GPU. The orchestrator ignores `ResourceSettings` for step pods, so the requests travel in its
pod settings; this builds each step's pod manifest the way its entrypoint does
(`apply_default_resource_requests`, then `build_pod_manifest`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip(
    "kubernetes",
    reason="the kubernetes client is not installed: install the `kubeflow` extra",
)

from braintumor.params import clahe_params, load_params, promotion_policy

REPO_ROOT = Path(__file__).resolve().parents[1]
PARAMS = REPO_ROOT / "params.yaml"


def _step_pods(run: dict[str, Any]) -> dict[str, Any]:
    """Each step's pod manifest, from the settings the training pipeline gives its steps."""
    from zenml.integrations.kubernetes import kube_utils
    from zenml.integrations.kubernetes.flavors import KubernetesOrchestratorSettings
    from zenml.integrations.kubernetes.manifest_utils import build_pod_manifest

    from pipelines.training import training_pipeline

    pipeline = training_pipeline.with_options()
    pipeline.prepare(
        data_source="/nowhere",
        data_hash="offline",
        run=run,
        integrity=dict(load_params(PARAMS)["integrity"]),
        clahe=clahe_params(PARAMS).model_dump(),
        promotion_policy=promotion_policy(PARAMS).model_dump(),
    )
    pods = {}
    for step, invocation in pipeline.invocations.items():
        raw = invocation.step.configuration.settings.get("orchestrator.kubernetes")
        settings = KubernetesOrchestratorSettings.model_validate(
            raw.model_dump() if raw is not None else {}
        )
        pod_settings = kube_utils.apply_default_resource_requests(
            memory="400Mi", pod_settings=settings.pod_settings
        )
        pods[step] = build_pod_manifest(
            pod_name=None,
            image_name="registry.example.com/braintumor:test",
            command=["python"],
            args=["-m", "zenml.entrypoints.step_entrypoint"],
            privileged=False,
            pod_settings=pod_settings,
        )
    return pods


def _resources(pod: Any) -> dict[str, dict[str, Any]]:
    resources = pod.spec.containers[0].resources or {}
    if not isinstance(resources, dict):
        resources = resources.to_dict()
    return {kind: dict(resources.get(kind) or {}) for kind in ("requests", "limits")}


def test_train_pods_request_gpu_cpu_and_memory_and_no_other_pod_a_gpu() -> None:
    full = yaml.safe_load((REPO_ROOT / "configs" / "full.yaml").read_text())["parameters"]["run"]
    run = {**full, "resources": {"gpu_count": 1, "cpu_count": 4, "memory": "16Gi"}}
    pods = _step_pods(run)
    train_steps = {f"train_{backbone}" for backbone in full["backbones"]}
    assert train_steps <= set(pods)
    for step, pod in pods.items():
        resources = _resources(pod)
        if step in train_steps:
            wanted = {"nvidia.com/gpu": "1", "cpu": "4", "memory": "16Gi"}
            assert resources == {"requests": wanted, "limits": wanted}, (step, resources)
        else:
            # ZenML's own floor for a step pod, and nothing else.
            assert resources == {"requests": {"memory": "400Mi"}, "limits": {}}, (step, resources)


def test_without_resources_in_the_run_config_no_pod_asks_for_a_gpu() -> None:
    full = yaml.safe_load((REPO_ROOT / "configs" / "full.yaml").read_text())["parameters"]["run"]
    run = {key: value for key, value in full.items() if key != "resources"}
    for step, pod in _step_pods(run).items():
        assert "nvidia.com/gpu" not in str(_resources(pod)), step


def test_a_remote_orchestrator_with_a_local_store_is_one_line_and_exit_2(
    sample_dir, tmp_path, monkeypatch
) -> None:
    from typer.testing import CliRunner
    from zenml.stack import Stack

    from braintumor.data.ingest import ingest
    from braintumor_zenml.cli import app

    data_dir = ingest(sample_dir, out_dir=tmp_path / "raw").out_dir
    monkeypatch.setattr(Stack, "requires_remote_server", property(lambda self: True))
    smoke = Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml"
    result = CliRunner().invoke(app, ["train", "--config", str(smoke), "--data", str(data_dir)])
    assert result.exit_code == 2, result.output
    assert "needs a ZenML server" in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
