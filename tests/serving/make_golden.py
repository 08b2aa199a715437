"""Golden preprocessing tensors for `test_preprocessing_matches_the_golden_tensors`.

Run `python -m tests.serving.make_golden` from the repository root to rewrite the file after
an intended change of decoding or preprocessing (and repackage the models it affects).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from braintumor.imaging import decode_image
from braintumor.preprocessing import PreprocessSpec, preprocess

HERE = Path(__file__).resolve().parent
GOLDEN_PATH = HERE / "golden_preprocess.json"
SAMPLE_DIR = HERE.parent / "data" / "sample"
IMAGES = (
    "Testing/glioma_tumor/image(27).jpg",
    "Testing/meningioma_tumor/image(67).jpg",
    "Testing/no_tumor/image(5).jpg",
    "Testing/pituitary_tumor/image(10).jpg",
)
# Small sizes keep the file small; raw and CLAHE, with and without cropping to the head.
SPECS = {
    "raw32": PreprocessSpec(image_size=32, channels=1),
    "clahe32_crop": PreprocessSpec(image_size=32, channels=1, variant="clahe", crop_to_head=True),
}


def golden_tensors(sample_dir: Path = SAMPLE_DIR) -> dict[str, dict]:
    result = {}
    for image in IMAGES:
        pixels = decode_image((sample_dir / image).read_bytes()).pixels
        for spec_name, spec in SPECS.items():
            tensor = preprocess(pixels, spec)[..., 0]
            result[f"{image}|{spec_name}"] = {
                "spec": spec.to_dict(),
                "tensor": np.rint(tensor).astype(int).tolist(),
            }
    return result


if __name__ == "__main__":
    GOLDEN_PATH.write_text(json.dumps(golden_tensors(), separators=(",", ":")))
    print(f"wrote {GOLDEN_PATH}")
