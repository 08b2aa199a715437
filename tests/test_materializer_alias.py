"""Artifacts written before `braintumor_zenml` existed name their materializers and data
types `steps.materializers.<Class>`: ZenML must still resolve those paths to the classes in
use, or promote, rollback and package fail for every version trained before the upgrade."""

from __future__ import annotations

import pytest
from zenml.utils import source_utils

import braintumor_zenml.materializers as current

OLD_PATH = "steps.materializers"
# Every class the old module held (git show 9b797da^:steps/materializers.py).
OLD_CLASSES = (
    "ImageFolder",
    "ImageFolderMaterializer",
    "KerasModelMaterializer",
    "OodDetectorMaterializer",
)


@pytest.mark.parametrize("name", OLD_CLASSES)
def test_the_old_source_path_loads_the_current_class(name: str) -> None:
    assert source_utils.load(f"{OLD_PATH}.{name}") is getattr(current, name)

