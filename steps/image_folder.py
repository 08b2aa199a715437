"""`ImageFolder`: a folder of images (with its manifest) passed between steps as an artifact.

On a local stack it is stored once per data version; on a remote one (Kubeflow, Kubernetes)
each step's pod gets its own copy from the artifact store, so no step assumes a local path.
Loading extracts into a cache keyed by the artifact, so several steps on one machine share one
copy instead of unpacking the images again.
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

from zenml.enums import ArtifactType
from zenml.io import fileio
from zenml.materializers.base_materializer import BaseMaterializer

from braintumor.constants import MANIFEST_FILE


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
