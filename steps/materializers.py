"""ZenML materializers for the project's own types.

`KerasModelMaterializer` stores a Keras 3 model as one `model.keras` file (the native,
pickle-free format) so models pass between steps without cloudpickle. ZenML's own
TensorFlow integration targets Keras 2 and must not be installed (see docs/pitfalls.md).
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import keras
from zenml.enums import ArtifactType
from zenml.io import fileio
from zenml.materializers.base_materializer import BaseMaterializer

# Registers the project's custom layers before any model is deserialised.
import braintumor.models.layers  # noqa: F401

MODEL_FILE = "model.keras"


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
