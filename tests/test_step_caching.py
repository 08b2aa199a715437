"""How ZenML 0.98 decides caching, as the training pipeline relies on it: a step declared
`enable_cache=False` (promote, package) runs every time, unless the run config sets a
run-level `enable_cache`, which ZenML applies to every step over the step's own setting.
`braintumor_zenml.launch.run_document` therefore never sets it to true."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pytest
import yaml
import zenml

from braintumor_zenml.launch import run_document

pytestmark = pytest.mark.slow


@zenml.step
def cacheable() -> Annotated[int, "value"]:
    return 1


@zenml.step(enable_cache=False)
def always(value: int) -> Annotated[int, "again"]:
    return value + 1


@zenml.pipeline(name="step_caching_test_pipeline")
def caching_pipeline() -> None:
    always(cacheable())


def _statuses(document: dict, tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(document))
    caching_pipeline.with_options(config_path=str(config))()  # the first run fills the cache
    run = caching_pipeline.with_options(config_path=str(config))()
    run = zenml.client.Client().get_pipeline_run(run.id)
    return {name: step.status.value for name, step in run.steps.items()}


def test_a_run_level_enable_cache_overrides_the_steps_own_setting(tmp_path: Path) -> None:
    statuses = _statuses({"enable_cache": True}, tmp_path)
    assert statuses == {"cacheable": "cached", "always": "cached"}  # the bug it caused


def test_run_document_leaves_uncached_steps_uncached(tmp_path: Path) -> None:
    document = run_document({"enable_cache": True}, {}, enable_cache=True)
    document.pop("parameters")  # this pipeline takes none
    assert _statuses(document, tmp_path) == {"cacheable": "cached", "always": "completed"}
