"""Shared fixtures: the shipped sample, the full dataset (skip when absent), temp homes."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO_ROOT / "tests" / "data" / "sample"
FULL_DATASET_DIR = Path(
    os.environ.get(
        "BRAINTUMOR_FULL_DATASET",
        REPO_ROOT.parent / "shared" / "datasets" / "brain-tumor-classification-mri",
    )
)

# Isolated ZenML and BentoML homes for the whole session, set before either is imported,
# so tests never touch a developer's own stores.
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="braintumor-tests-"))
os.environ["ZENML_CONFIG_PATH"] = str(_SESSION_HOME / "zenml")
os.environ["BENTOML_HOME"] = str(_SESSION_HOME / "bentoml")
os.environ["BRAINTUMOR_ARTIFACT_CACHE"] = str(_SESSION_HOME / "artifact-cache")
os.environ.setdefault("ZENML_LOGGING_VERBOSITY", "WARN")
# Quiet, offline-friendly defaults for every test process.
os.environ.setdefault("ZENML_ANALYTICS_OPT_IN", "false")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """A small real sample in the Kaggle layout (8 images per class) plus 4 planted bad files."""
    return SAMPLE_DIR


@pytest.fixture(scope="session")
def full_dataset_dir() -> Path:
    """The full Kaggle dataset; tests using it skip with a reason when it is absent."""
    if not (FULL_DATASET_DIR / "Training").is_dir():
        pytest.skip(
            f"full dataset not found at {FULL_DATASET_DIR} "
            "(set BRAINTUMOR_FULL_DATASET to a copy in the Kaggle layout to run this test)"
        )
    return FULL_DATASET_DIR


@pytest.fixture(scope="session")
def dark_folder(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample's Training slices 60% darker and resized to 256 px: a drifted batch."""
    import cv2
    import numpy as np

    from braintumor.imaging import decode_image
    from braintumor.monitoring.features import list_images

    out = tmp_path_factory.mktemp("dark")
    for path in list_images(sample_dir / "Training"):
        if not path.name.startswith("planted_"):
            gray = decode_image(path.read_bytes()).pixels
            small = cv2.resize((gray * 0.4).astype(np.uint8), (256, 256))
            cv2.imwrite(str(out / f"{path.parent.name}-{path.stem}.png"), small)
    return out
