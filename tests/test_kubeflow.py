"""The training pipeline compiled for a Kubeflow stack, offline: a fake kube context, an S3
artifact store URI, no image build. `braintumor train --config configs/full.yaml` compiles the
KFP spec, fails to upload it (nothing listens) and says so in one line; the test then reads
the compiled spec: DAG edges, image, a strict parse against KFP's `PipelineSpec`, and GPU /
CPU / memory requests on the train_<backbone> steps only."""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

pytest.importorskip(
    "kfp",
    reason="kfp is not installed: install the `kubeflow` extra (pip install -e '.[kubeflow]')",
)
pytest.importorskip(
    "kfp.kubernetes", reason="kfp-kubernetes is not installed: install the `kubeflow` extra"
)

from typer.testing import CliRunner
from zenml.artifact_stores import (
    BaseArtifactStore,
    BaseArtifactStoreConfig,
    BaseArtifactStoreFlavor,
)

from braintumor.data.ingest import ingest
from braintumor_zenml.cli import app

REPO_ROOT = Path(__file__).resolve().parents[1]
IMAGE = "registry.example.com/braintumor/train:test"
CONTEXT = "fake-kubeflow"
BACKBONES = ["vgg16", "custom_cnn"]


class OfflineS3ArtifactStoreConfig(BaseArtifactStoreConfig):
    SUPPORTED_SCHEMES: ClassVar[set[str]] = {"s3://"}


class OfflineS3ArtifactStore(BaseArtifactStore):
    """An `s3://` artifact store that must not be touched while compiling."""

    def _offline(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("compiling for Kubeflow touched the artifact store")

    open = copyfile = exists = glob = isdir = listdir = makedirs = mkdir = _offline
    remove = rename = rmtree = stat = size = walk = _offline


class OfflineS3ArtifactStoreFlavor(BaseArtifactStoreFlavor):
    @property
    def name(self) -> str:
        return "offline_s3"

    @property
    def config_class(self) -> type[OfflineS3ArtifactStoreConfig]:
        return OfflineS3ArtifactStoreConfig

    @property
    def implementation_class(self) -> type[OfflineS3ArtifactStore]:
        return OfflineS3ArtifactStore


def _kubeconfig(home: Path) -> Path:
    path = home / ".kube" / "config"
    path.parent.mkdir()
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "fake", "user": {"token": "not-a-token"}}],
                "contexts": [{"name": CONTEXT, "context": {"cluster": "fake", "user": "fake"}}],
                "current-context": CONTEXT,
            }
        )
    )
    return path


def _traceback(result: Any) -> str:
    if result.exc_info is None:
        return ""
    return "".join(traceback.format_exception(*result.exc_info))


@pytest.fixture(scope="module")
def kubeflow_run(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """`braintumor train` on a Kubeflow stack; the CLI's result and the compiled spec."""
    from zenml.client import Client
    from zenml.enums import StackComponentType
    from zenml.stack import Stack
    from zenml.utils import io_utils

    tmp = tmp_path_factory.mktemp("kubeflow")
    data_dir = ingest(sample_dir, out_dir=tmp / "raw").out_dir
    config = yaml.safe_load((REPO_ROOT / "configs" / "full.yaml").read_text())
    config["parameters"]["run"]["backbones"] = BACKBONES
    overrides = config["parameters"]["run"].get("overrides") or {}
    config["parameters"]["run"]["overrides"] = {
        b: overrides[b] for b in BACKBONES if b in overrides
    }
    config["parameters"]["run"]["resources"] = {"gpu_count": 1, "cpu_count": 4, "memory": "16Gi"}
    config["settings"] = {
        "docker": {
            "skip_build": True,
            "parent_image": IMAGE,
            "allow_download_from_artifact_store": False,
            "allow_download_from_code_repository": False,
        }
    }
    config_path = tmp / "kubeflow.yaml"
    config_path.write_text(yaml.safe_dump(config))

    client = Client()
    previous_stack = client.active_stack_model.id
    with pytest.MonkeyPatch.context() as patch:
        from kubernetes.config import kube_config

        # The kube config is found through KUBECONFIG as read at import, and kfp reads its
        # own context from ~/.config/kfp: neither may be the developer's.
        patch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(_kubeconfig(tmp)))
        patch.setenv("HOME", str(tmp))
        # A remote orchestrator wants a ZenML server (to report back to), which this offline
        # test has not: the session's local store stands in for it.
        patch.setattr(Stack, "requires_remote_server", property(lambda self: False))
        # The client-side run log would go to the (unreachable) artifact store.
        patch.setenv("ZENML_DISABLE_PIPELINE_LOGS_STORAGE", "true")
        client.create_flavor(
            source=f"{__name__}.OfflineS3ArtifactStoreFlavor",
            component_type=StackComponentType.ARTIFACT_STORE,
        )
        client.create_flavor(
            source="braintumor_zenml.kubeflow_flavor.ResourceKubeflowOrchestratorFlavor",
            component_type=StackComponentType.ORCHESTRATOR,
        )
        orchestrator = client.create_stack_component(
            "kfp",
            "kubeflow_resources",
            StackComponentType.ORCHESTRATOR,
            {"kubernetes_context": CONTEXT},
        )
        client.create_stack_component(
            "s3", "offline_s3", StackComponentType.ARTIFACT_STORE, {"path": "s3://bt/zenml"}
        )
        client.create_stack_component(
            "registry",
            "default",
            StackComponentType.CONTAINER_REGISTRY,
            {"uri": "registry.example.com/braintumor"},
        )
        client.create_stack_component("builder", "local", StackComponentType.IMAGE_BUILDER, {})
        client.create_stack(
            "kubeflow",
            components={
                StackComponentType.ORCHESTRATOR: "kfp",
                StackComponentType.ARTIFACT_STORE: "s3",
                StackComponentType.CONTAINER_REGISTRY: "registry",
                StackComponentType.IMAGE_BUILDER: "builder",
            },
        )
        client.activate_stack("kubeflow")
        try:
            started, started_cpu = time.perf_counter(), time.process_time()
            result = CliRunner().invoke(
                app, ["train", "--config", str(config_path), "--data", str(data_dir)]
            )
            seconds = time.perf_counter() - started
            cpu_seconds = time.process_time() - started_cpu
        finally:
            client.activate_stack(previous_stack)
    config_root = Path(io_utils.get_global_config_directory())
    pipelines_dir = config_root / "kubeflow" / str(orchestrator.id) / "pipelines"
    specs = sorted(pipelines_dir.glob("*.yaml"))
    assert len(specs) == 1, (specs, result.output, _traceback(result))
    documents = list(yaml.safe_load_all(specs[0].read_text()))
    assert len(documents) == 1, "a platform spec (kfp-kubernetes) was not expected"
    run = client.list_pipeline_runs(sort_by="desc:created", size=1, hydrate=True).items[0]
    return KubeflowRun(result, documents[0], seconds, cpu_seconds, run)


@dataclass
class KubeflowRun:
    cli: Any
    spec: dict[str, Any]
    seconds: float
    cpu_seconds: float
    zenml_run: Any

    def tasks(self) -> dict[str, dict[str, Any]]:
        """The DAG's tasks by ZenML step name (KFP's task keys are sanitised names)."""
        return {t["taskInfo"]["name"]: t for t in self.spec["root"]["dag"]["tasks"].values()}

    def container(self, step: str) -> dict[str, Any]:
        component = self.spec["components"][self.tasks()[step]["componentRef"]["name"]]
        return self.spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]


def test_a_failed_upload_is_one_line_a_non_zero_exit_and_a_failed_run(kubeflow_run) -> None:
    result = kubeflow_run.cli
    print(
        f"compile + failed upload: {kubeflow_run.seconds:.1f} s "
        f"({kubeflow_run.cpu_seconds:.1f} s of CPU)"
    )
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    assert f"Kubernetes context '{CONTEXT}'" in errors[0] and "Connection refused" in errors[0]
    assert kubeflow_run.zenml_run.status.value == "failed"


def test_the_compiled_spec_parses_strictly_as_a_kfp_pipeline_spec(kubeflow_run) -> None:
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    parsed = json_format.ParseDict(kubeflow_run.spec, pipeline_spec_pb2.PipelineSpec())
    assert len(parsed.root.dag.tasks) == len(kubeflow_run.zenml_run.snapshot.step_configurations)


def test_kfp_is_a_supported_version_and_compiled_the_spec() -> None:
    from importlib.metadata import version

    from packaging.version import Version

    kfp_version = Version(version("kfp"))
    assert Version("2.15") <= kfp_version < Version("2.17"), kfp_version
    assert Version(version("kfp-kubernetes")).release[:2] == kfp_version.release[:2]


def test_the_spec_was_written_by_this_kfp(kubeflow_run) -> None:
    from importlib.metadata import version

    assert kubeflow_run.spec["sdkVersion"] == f"kfp-{version('kfp')}"


def test_the_dag_edges_are_the_pipeline_s(kubeflow_run) -> None:
    tasks = kubeflow_run.tasks()
    key_to_step = {
        key: t["taskInfo"]["name"] for key, t in kubeflow_run.spec["root"]["dag"]["tasks"].items()
    }
    edges = {
        (key_to_step[upstream], step)
        for step, task in tasks.items()
        for upstream in task.get("dependentTasks", [])
    }
    snapshot = kubeflow_run.zenml_run.snapshot
    assert edges == {
        (upstream, step)
        for step, configuration in snapshot.step_configurations.items()
        for upstream in configuration.spec.upstream_steps
    }
    for backbone in BACKBONES:
        for upstream in ("load_data", "split_data", "plan_balance"):
            assert (upstream, f"train_{backbone}") in edges
        assert (f"train_{backbone}", f"evaluate_{backbone}") in edges
        assert (f"evaluate_{backbone}", "select_best") in edges
    for edge in [
        ("load_data", "audit_data"),
        ("audit_data", "split_data"),
        ("select_best", "calibrate_winner"),
        ("select_best", "evaluate_winner"),
        ("calibrate_winner", "evaluate_winner"),
        ("calibrate_winner", "fit_guard"),
        ("evaluate_winner", "gate"),
        ("gate", "promote"),
        ("promote", "package"),
        ("fit_guard", "package"),
    ]:
        assert edge in edges, edge


def test_every_step_runs_the_configured_image(kubeflow_run) -> None:
    for step in kubeflow_run.tasks():
        assert kubeflow_run.container(step)["image"] == IMAGE, step


def test_train_steps_request_gpu_cpu_and_memory_and_no_other_step_a_gpu(kubeflow_run) -> None:
    train_steps = {f"train_{backbone}" for backbone in BACKBONES}
    assert train_steps <= set(kubeflow_run.tasks())
    for step in kubeflow_run.tasks():
        resources = kubeflow_run.container(step).get("resources", {})
        if step in train_steps:
            assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu", resources
            assert resources["accelerator"]["resourceCount"] == "1", resources
            assert resources["resourceMemoryRequest"] == "16Gi", resources
            assert resources["resourceMemoryLimit"] == "16Gi", resources
            assert resources["resourceCpuRequest"] == "4", resources
            assert resources["resourceCpuLimit"] == "4", resources
        else:
            assert resources == {}, (step, resources)
