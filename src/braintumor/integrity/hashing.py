"""Image fingerprints computed once at ingestion and cached in the manifest.

- `pixel_sha256`: sha256 of the decoded grayscale pixels and shape, so the same picture saved
  twice with different bytes (re-encoded metadata, other container) is an exact duplicate.
- `phash` / `phash_mirror`: 64-bit DCT perceptual hashes (hex) of the image and of its
  horizontal mirror; near-duplicate candidates are pairs within a small Hamming distance.
"""

from __future__ import annotations

import hashlib

import cv2
import numpy as np

HASH_BITS = 64


def pixel_sha256(gray: np.ndarray) -> str:
    digest = hashlib.sha256(f"{gray.shape[0]}x{gray.shape[1]}:".encode())
    digest.update(np.ascontiguousarray(gray, dtype=np.uint8).tobytes())
    return digest.hexdigest()


def phash(gray: np.ndarray) -> int:
    """DCT perceptual hash: 32x32 thumbnail, low 8x8 frequencies, median threshold."""
    small = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].flatten()
    bits = low > np.median(low)
    return int(np.packbits(bits).view(">u8")[0])


def fingerprint(gray: np.ndarray) -> dict[str, str]:
    """The hash columns that ingestion writes into the manifest for one image."""
    return {
        "pixel_sha256": pixel_sha256(gray),
        "phash": f"{phash(gray):016x}",
        "phash_mirror": f"{phash(np.ascontiguousarray(gray[:, ::-1])):016x}",
    }
