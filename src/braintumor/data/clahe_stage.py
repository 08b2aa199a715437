"""The DVC `clahe` stage: data/raw -> data/clahe (same layout as PNG, plus a manifest).

Each image goes through `preprocessing.preprocess_gray` with the CLAHE variant, the function
training and serving use, at the export's size from params.yaml. Training does not read the
result: it applies CLAHE itself at each model's input size (see dvc.yaml).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import cv2
import numpy as np
import pandas as pd

from braintumor.data.manifest import COLUMNS, read_manifest, write_manifest
from braintumor.imaging import decode_image
from braintumor.integrity.hashing import fingerprint
from braintumor.preprocessing import PreprocessSpec, preprocess_gray


def _derive_one(raw_dir: Path, out_dir: Path, row: dict, spec: PreprocessSpec) -> dict:
    gray = preprocess_gray(decode_image((raw_dir / row["path"]).read_bytes()).pixels, spec)
    image = gray if spec.channels == 1 else np.repeat(gray[..., None], 3, axis=-1)
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError(f"could not encode {row['path']} as PNG")
    data = encoded.tobytes()
    relative = str(PurePosixPath(row["path"]).with_suffix(".png"))
    target = out_dir / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return {
        "path": relative,
        "split": row["split"],
        "label": row["label"],
        "sha256": hashlib.sha256(data).hexdigest(),
        **fingerprint(gray),
        "width": spec.image_size,
        "height": spec.image_size,
        "mode": "L" if spec.channels == 1 else "RGB",
        "format": "PNG",
        "file_size": len(data),
        "source": row["source"],
        "source_path": f"raw/{row['path']}",
    }


def derive_clahe(raw_dir: Path, out_dir: Path, spec: PreprocessSpec) -> pd.DataFrame:
    """Write the CLAHE version of every image in `raw_dir`'s manifest to `out_dir`."""
    if spec.variant != "clahe":
        raise ValueError("derive_clahe needs a PreprocessSpec with variant='clahe'")
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    manifest = read_manifest(raw_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".clahe-", dir=out_dir.parent))
    try:
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            rows = list(
                pool.map(
                    lambda r: _derive_one(raw_dir, staging, r, spec), manifest.to_dict("records")
                )
            )
        frame = pd.DataFrame(rows, columns=list(COLUMNS))
        write_manifest(frame, staging)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.replace(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return frame
