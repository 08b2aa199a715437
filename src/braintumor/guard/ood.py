"""Out-of-distribution scores on the model's embedding, fitted on the training split.

Two detectors (compared by `benchmarks/abstention.py`), both on L2-normalised embeddings:

- `mahalanobis`: class-conditional Gaussians with one shared covariance (Lee et al., 2018),
  fitted with scikit-learn's Ledoit-Wolf shrinkage; the score is the smallest squared
  Mahalanobis distance to a class mean.
- `knn`: the cosine distance to the k-th nearest training embedding (Sun et al., 2022),
  found with scikit-learn's `NearestNeighbors` when fitting.

A fitted detector is a few NumPy arrays (`OodDetector`), stored with the model
(`to_npz`/`from_npz`), and scored in NumPy alone, so serving needs no scikit-learn. The energy
score (Liu et al., 2020) comes from the logits. Higher always means less like the training
data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

DetectorKind = Literal["mahalanobis", "knn"]
DETECTORS: tuple[str, ...] = ("mahalanobis", "knn")


def l2_normalise(embeddings: np.ndarray) -> np.ndarray:
    embeddings = np.asarray(embeddings, dtype=np.float64)
    norms = np.linalg.norm(embeddings, axis=-1, keepdims=True)
    return embeddings / np.maximum(norms, 1e-12)


def energy(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Negative free energy -T * logsumexp(logits / T) per row: higher is less familiar."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    top = scaled.max(axis=-1, keepdims=True)
    return -temperature * (top[..., 0] + np.log(np.exp(scaled - top).sum(axis=-1)))


@dataclass(frozen=True)
class OodDetector:
    """A fitted detector. `arrays` hold what its score needs (see `score`)."""

    kind: DetectorKind
    arrays: dict[str, np.ndarray] = field(repr=False)
    k: int = 0  # knn only

    def score(self, embeddings: np.ndarray) -> np.ndarray:
        """OOD score of each embedding (N, D): higher is less like the training split."""
        z = l2_normalise(embeddings)
        if self.kind == "mahalanobis":
            centred = z[:, None, :] - self.arrays["means"][None]  # (N, classes, D)
            # The quadratic form as one matrix product (BLAS); NumPy's unoptimised
            # three-operand einsum loops over D x D per row, the slowest part of the guard.
            distances = ((centred @ self.arrays["precision"]) * centred).sum(axis=-1)
            return distances.min(axis=1)
        similarity = z @ self.arrays["bank"].T  # cosine similarity to every training embedding
        kth = np.partition(-similarity, self.k - 1, axis=1)[:, self.k - 1]
        return 1.0 + kth  # 1 - cosine similarity of the k-th nearest

    def to_npz(self, path: str | Path) -> Path:
        np.savez_compressed(path, kind=np.array(self.kind), k=np.array(self.k), **self.arrays)
        return Path(path)

    @classmethod
    def from_npz(cls, path: str | Path) -> OodDetector:
        with np.load(path) as stored:
            arrays = {name: stored[name] for name in stored.files if name not in ("kind", "k")}
            return cls(kind=str(stored["kind"]), arrays=arrays, k=int(stored["k"]))


def fit_detector(
    kind: DetectorKind, embeddings: np.ndarray, labels: np.ndarray, k: int = 10
) -> OodDetector:
    """Fit `kind` on the training split's embeddings (N, D) and class indices (N,)."""
    z, labels = l2_normalise(embeddings), np.asarray(labels)
    if len(z) < 2 or len(z) != len(labels):
        raise ValueError(f"need at least two embeddings with labels, got {z.shape}, {labels.shape}")
    if kind == "mahalanobis":
        from sklearn.covariance import LedoitWolf

        classes = np.unique(labels)
        means = np.stack([z[labels == c].mean(axis=0) for c in classes])
        centred = z - means[np.searchsorted(classes, labels)]
        precision = LedoitWolf(assume_centered=True).fit(centred).precision_
        return OodDetector("mahalanobis", {"means": means, "precision": precision})
    if kind == "knn":
        if not 1 <= k <= len(z):
            raise ValueError(f"k must be between 1 and {len(z)}, not {k}")
        return OodDetector("knn", {"bank": z.astype(np.float32)}, k=k)
    raise ValueError(f"OOD detector must be one of {DETECTORS}, not {kind!r}")
