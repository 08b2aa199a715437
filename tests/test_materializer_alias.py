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


def test_an_artifact_written_by_missing_code_is_a_clear_error() -> None:
    from braintumor_zenml.operations import PromotionError, _load

    class Unloadable:
        def load(self) -> None:
            raise ModuleNotFoundError("No module named 'old_code'", name="old_code")

    with pytest.raises(
        PromotionError,
        match=r"version 4's 'best_model' artifact cannot be "
        r"loaded \(No module named 'old_code'\).*or retrain",
    ):
        _load(Unloadable(), 4, "best_model")
