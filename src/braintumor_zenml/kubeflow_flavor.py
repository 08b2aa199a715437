"""A Kubeflow orchestrator flavor that turns ZenML's `ResourceSettings` into real requests.

ZenML 0.98's stock Kubeflow orchestrator (kfp 2.15/2.16) asks for no resources that a step's
`ResourceSettings` name: it passes a GPU count only together with an `accelerator` node
selector, hands kfp memory as a float (which kfp refuses), replaces the `resources` of its
pod settings with an empty object while validating them, and logs a failed pipeline upload as
a warning, leaving the run "provisioning" and the command successful. This flavor keeps
everything else of the stock one and changes exactly that:

- each step's `ResourceSettings` become container requests and limits in the compiled spec:
  CPU and memory (`cpuRequest`/`cpuLimit`, `memoryRequest`/`memoryLimit`) and GPUs as an
  accelerator of type `gpu_resource` (default `nvidia.com/gpu`) with the requested count.
  A step without `gpu_count` gets no accelerator;
- a pipeline that cannot be uploaded or started raises `PipelineSubmissionError`, so the run
  is marked failed and `braintumor train` exits non-zero with one line.

Register it once per ZenML store (the README's "Scaling out" has the commands): the flavor's
source is `braintumor_zenml.kubeflow_flavor.ResourceKubeflowOrchestratorFlavor`
(`zenml orchestrator flavor register <source>`), then

    zenml orchestrator register kfp --flavor=kubeflow_resources --kubernetes_context=<context>

Needs the `kubeflow` extra (kfp, kfp-kubernetes).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import urllib3
from pydantic import Field
from zenml.config.resource_settings import ByteUnit, ResourceSettings
from zenml.integrations.kubeflow.flavors.kubeflow_orchestrator_flavor import (
    KubeflowOrchestratorConfig,
    KubeflowOrchestratorFlavor,
)
from zenml.integrations.kubeflow.orchestrators.kubeflow_orchestrator import KubeflowOrchestrator
from zenml.orchestrators import PipelineSubmissionError

from braintumor.run_config import kubernetes_cpu
from braintumor_zenml.sources import by_import_path

if TYPE_CHECKING:
    from kfp import dsl

FLAVOR_NAME = "kubeflow_resources"

# ZenML's memory units -> the Kubernetes quantity suffixes kfp accepts.
_KUBERNETES_SUFFIX = {
    ByteUnit.B: "",
    ByteUnit.KB: "K",
    ByteUnit.KIB: "Ki",
    ByteUnit.MB: "M",
    ByteUnit.MIB: "Mi",
    ByteUnit.GB: "G",
    ByteUnit.GIB: "Gi",
    ByteUnit.TB: "T",
    ByteUnit.TIB: "Ti",
    ByteUnit.PB: "P",
    ByteUnit.PIB: "Pi",
}


def kubernetes_memory(resources: ResourceSettings) -> str | None:
    """`ResourceSettings.memory` ("16GiB") as a Kubernetes quantity ("16Gi"), or None."""
    parsed = resources.memory_quantity_and_unit()
    if parsed is None:
        return None
    quantity, unit = parsed
    return f"{quantity}{_KUBERNETES_SUFFIX[unit]}"


class ResourceKubeflowOrchestratorConfig(KubeflowOrchestratorConfig):
    """The stock Kubeflow configuration, plus the name of the cluster's GPU resource."""

    gpu_resource: str = Field(
        "nvidia.com/gpu",
        description="Extended resource that a step's `gpu_count` asks for "
        "(e.g. `nvidia.com/gpu`, `amd.com/gpu`).",
    )


class ResourceKubeflowOrchestrator(KubeflowOrchestrator):
    """Kubeflow orchestrator whose steps request the resources their settings name."""

    @property
    def config(self) -> ResourceKubeflowOrchestratorConfig:
        return self._config  # type: ignore[return-value]

    def _configure_container_resources(
        self,
        dynamic_component: dsl.PipelineTask,
        resource_settings: ResourceSettings,
        node_selector_constraint: tuple[str, str] | None = None,
    ) -> dsl.PipelineTask:
        """Requests = limits for CPU and memory; `gpu_count` GPUs of `gpu_resource`.

        The stock `accelerator` node-selector convention is not needed: a GPU count alone
        asks for GPUs, and a step without one gets none.
        """
        task = dynamic_component
        if resource_settings.cpu_count:
            cpu = kubernetes_cpu(resource_settings.cpu_count)
            task = task.set_cpu_request(cpu).set_cpu_limit(cpu)
        memory = kubernetes_memory(resource_settings)
        if memory:
            task = task.set_memory_request(memory).set_memory_limit(memory)
        if resource_settings.gpu_count:
            task = task.set_accelerator_type(self.config.gpu_resource).set_accelerator_limit(
                resource_settings.gpu_count
            )
        return task

    def _upload_and_run_pipeline(self, *args: Any, **kwargs: Any) -> Any:
        """The stock upload, with its "Failed to create" `RuntimeError` as a submission error."""
        try:
            return super()._upload_and_run_pipeline(*args, **kwargs)
        except PipelineSubmissionError:
            raise
        except RuntimeError as error:
            raise self._submission_error(error.__context__ or error) from None

    def _get_kfp_client(self, settings: Any) -> Any:
        """The stock client, whose connection errors abort the submission (making the client
        already talks to the cluster: kube config, health check)."""
        try:
            client = super()._get_kfp_client(settings=settings)
        except Exception as error:
            raise self._submission_error(error) from None
        return _RaisingClient(client, self._submission_error)

    def _submission_error(self, error: Exception) -> PipelineSubmissionError:
        if self.config.kubernetes_context:
            target = f"Kubernetes context '{self.config.kubernetes_context}'"
        elif self.config.kubeflow_hostname:
            target = f"Kubeflow at '{self.config.kubeflow_hostname}'"
        else:
            target = f"the cluster of connector '{self.connector}'"
        if isinstance(error, urllib3.exceptions.MaxRetryError) and error.reason:
            error = error.reason  # "Failed to establish a new connection: ... refused"
        reason = " ".join(str(error).split())[:300] or type(error).__name__
        return PipelineSubmissionError(
            f"could not submit the pipeline to {target} (orchestrator '{self.name}'): {reason}"
        )


class _RaisingClient:
    """Wraps a kfp client so that HTTP errors raise instead of being logged and dropped."""

    def __init__(self, client: Any, make_error: Any) -> None:
        self._client = client
        self._make_error = make_error

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        @functools.wraps(attribute)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return attribute(*args, **kwargs)
            except urllib3.exceptions.HTTPError as error:
                raise self._make_error(error) from None

        return call


@by_import_path
class ResourceKubeflowOrchestratorFlavor(KubeflowOrchestratorFlavor):
    """Kubeflow orchestrator flavor whose steps request their `ResourceSettings`."""

    @property
    def name(self) -> str:
        return FLAVOR_NAME

    @property
    def config_class(self) -> type[ResourceKubeflowOrchestratorConfig]:
        return ResourceKubeflowOrchestratorConfig

    @property
    def implementation_class(self) -> type[ResourceKubeflowOrchestrator]:
        return ResourceKubeflowOrchestrator
