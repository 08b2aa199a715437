"""Shared helpers for the training tests: a splits table over the shipped sample."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from braintumor.constants import CLASS_ALIASES


def sample_splits(sample_dir: Path) -> pd.DataFrame:
    """A splits table (integrity's columns) over the sample: Training -> train, Testing -> val.

    The planted bad files are listed as quarantined, like the integrity split would do.
    """
    rows = []
    for path in sorted(sample_dir.rglob("*")):
        if not path.is_file() or path.parent.name not in CLASS_ALIASES:
            continue
        relative = path.relative_to(sample_dir).as_posix()
        planted = path.name.startswith("planted_")
        origin = path.relative_to(sample_dir).parts[0].lower()
        rows.append(
            {
                "path": relative,
                "label": CLASS_ALIASES[path.parent.name],
                "origin_split": origin,
                "cluster_id": len(rows),
                "split": "none" if planted else ("train" if origin == "training" else "val"),
                "status": "quarantined" if planted else "kept",
                "reason": "undecodable" if planted else "",
            }
        )
    return pd.DataFrame(rows)


def sample_splits_with_test(sample_dir: Path, out: Path) -> Path:
    """`sample_splits` written to `out` as CSV, its Testing rows both val and test (the
    sample is too small for three splits): what the benchmark scripts' tests read."""
    splits = sample_splits(sample_dir)
    test_rows = splits[splits.split == "val"].assign(split="test")
    pd.concat([splits, test_rows]).to_csv(out, index=False)
    return out


def square_images(n: int, size: int = 32, seed: int = 0):
    """Synthetic 4-class task: class c has one bright square of side 3 + 3c, anywhere."""
    import numpy as np

    from braintumor.training.dataset import ArraySplit

    rng = np.random.default_rng(seed)
    y = np.arange(n) % 4
    rng.shuffle(y)
    x = rng.normal(40, 12, (n, size, size, 1))
    for i, label in enumerate(y):
        side = 3 + 3 * int(label)
        top, left = rng.integers(1, size - side - 1, 2)
        x[i, top : top + side, left : left + side] += 150
    x = np.clip(x, 0, 255).astype(np.uint8)
    return ArraySplit(x, y.astype(np.int64), [f"synthetic/{i}.png" for i in range(n)])
