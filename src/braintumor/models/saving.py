"""Loading a saved `.keras` classifier (training side: packaging, benchmarks, the CLI)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_keras_model(path: str | Path) -> Any:
    """Load a `.keras` file safely (no Lambda layers, no pickled code)."""
    import keras

    import braintumor.models.layers  # noqa: F401  (registers the custom layers)

    return keras.saving.load_model(str(path), compile=False, safe_mode=True)
