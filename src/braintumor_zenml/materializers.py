"""ZenML materializers for the project's own types.

- `KerasModelMaterializer` stores a Keras 3 model as one `model.keras` file (the native,
  pickle-free format) so models pass between steps without cloudpickle. ZenML's own
  TensorFlow integration (`zenml integration install tensorflow`) must not be installed:
  it pins TensorFlow < 2.15 (Keras 2); with Keras 3 it stays silently off and Keras models
  would fall back to cloudpickle.
- `OodDetectorMaterializer` stores a fitted OOD detector as the `.npz` file the model store
  gets (`OodDetector.to_npz`).
- `ImageFolderMaterializer` stores a folder of images with its manifest. On a remote stack
  (Kubeflow, Kubernetes) each step's pod gets its own copy from the artifact store, so no
  step assumes a local path; loading extracts into a cache keyed by the artifact, so steps on
  one machine share one copy instead of unpacking the images again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import keras
from zenml.enums import ArtifactType
from zenml.io import fileio
from zenml.materializers.base_materializer import BaseMaterializer

# Registers the project's custom layers before any model is deserialised.
import braintumor.models.layers  # noqa: F401
from braintumor.constants import MANIFEST_FILE
from braintumor.guard.ood import OodDetector
from braintumor_zenml.sources import by_import_path

MODEL_FILE = "model.keras"


@by_import_path
class KerasModelMaterializer(BaseMaterializer):
    """Read and write `keras.Model` as `<uri>/model.keras` (safe mode: no Lambda code)."""

    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (keras.Model,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.MODEL

    def save(self, data: keras.Model) -> None:
        with self.get_temporary_directory(delete_at_exit=True) as temp_dir:
            local = os.path.join(temp_dir, MODEL_FILE)
            data.save(local)
            if not fileio.exists(self.uri):
                fileio.makedirs(self.uri)
            fileio.copy(local, os.path.join(self.uri, MODEL_FILE), overwrite=True)

    def load(self, data_type: type[Any]) -> keras.Model:
        with self.get_temporary_directory(delete_at_exit=True) as temp_dir:
            local = os.path.join(temp_dir, MODEL_FILE)
            fileio.copy(os.path.join(self.uri, MODEL_FILE), local, overwrite=True)
            return keras.saving.load_model(local, safe_mode=True)

    def extract_metadata(self, data: keras.Model) -> dict[str, Any]:
        return {
            "num_layers": len(data.layers),
            "num_params": int(data.count_params()),
            "num_trainable_params": int(sum(int(w.numpy().size) for w in data.trainable_weights)),
            "input_shape": str(tuple(data.input_shape[1:])),
            "model_name": data.name,
        }


@by_import_path
class OodDetectorMaterializer(BaseMaterializer):
    """Read and write `OodDetector` as `<uri>/ood.npz`."""

    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (OodDetector,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.MODEL
    FILE: ClassVar[str] = "ood.npz"

    def save(self, data: OodDetector) -> None:
        with self.get_temporary_directory(delete_at_exit=True) as temp_dir:
            local = data.to_npz(os.path.join(temp_dir, self.FILE))
            fileio.copy(str(local), os.path.join(self.uri, self.FILE), overwrite=True)

    def load(self, data_type: type[Any]) -> OodDetector:
        with self.get_temporary_directory(delete_at_exit=True) as temp_dir:
            local = os.path.join(temp_dir, self.FILE)
            fileio.copy(os.path.join(self.uri, self.FILE), local, overwrite=True)
            return OodDetector.from_npz(local)


@by_import_path
@dataclass(frozen=True)
class ImageFolder:
    """A local folder holding `manifest.csv` and the images it lists."""

    path: Path

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_FILE


def _cache_root() -> Path:
    default = Path(tempfile.gettempdir()) / "braintumor-artifacts"
    return Path(os.environ.get("BRAINTUMOR_ARTIFACT_CACHE", default))


@by_import_path
class ImageFolderMaterializer(BaseMaterializer):
    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (ImageFolder,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA
    ARCHIVE: ClassVar[str] = "images.tar"  # JPEGs do not compress: plain tar is faster

    def save(self, data: ImageFolder) -> None:
        if not data.manifest_path.is_file():
            raise FileNotFoundError(f"{data.path} has no {MANIFEST_FILE}")
        with self.get_temporary_directory(delete_at_exit=True) as tmp:
            archive = Path(tmp) / self.ARCHIVE
            with tarfile.open(archive, "w") as tar:
                for path in sorted(data.path.rglob("*")):
                    if path.is_file():
                        tar.add(path, arcname=path.relative_to(data.path).as_posix())
            fileio.copy(str(archive), os.path.join(self.uri, self.ARCHIVE), overwrite=True)

    def load(self, data_type: type[Any]) -> ImageFolder:
        target = _cache_root() / hashlib.sha256(self.uri.encode()).hexdigest()[:20]
        done = target / ".complete"
        if done.is_file():
            return ImageFolder(target)
        staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=_prepared(target.parent)))
        try:
            local = staging / self.ARCHIVE
            fileio.copy(os.path.join(self.uri, self.ARCHIVE), str(local), overwrite=True)
            with tarfile.open(local) as tar:
                tar.extractall(staging / "images", filter="data")  # refuses links and ../
            local.unlink()
            (staging / "images" / ".complete").touch()
            try:
                (staging / "images").replace(target)
            except OSError:  # another process extracted it first
                if not done.is_file():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return ImageFolder(target)

    def extract_metadata(self, data: ImageFolder) -> dict[str, Any]:
        images = sum(1 for _ in data.manifest_path.open()) - 1
        return {"images": images}


def _prepared(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
