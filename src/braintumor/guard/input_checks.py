"""Cheap checks before the model: is this upload a brain MRI slice at all?

An MRI slice is a grey, smooth-ish image of a head. These checks fail, each with its own
name, on what is clearly something else: a nearly constant image, a colourful image (a
photograph, a screenshot), pixel noise (neighbouring pixels as different as any two), or an
image with (almost) nothing brighter than the background. They are deliberately loose. On
the Kaggle set's 3,264 slices none fails (measured: gray-level spread >= 79, head fraction
>= 0.138, roughness <= 0.37, colourfulness 0), so the limits below sit far outside what real
slices show; what they let through is left to the out-of-distribution detector.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

NEARLY_CONSTANT = "nearly_constant"
COLOUR = "colour_image"
NOISE = "noise_like"
NO_HEAD = "no_head_region"
CHECKS = (NEARLY_CONSTANT, COLOUR, NOISE, NO_HEAD)

# Side of the downscaled copy the checks look at (fast, and independent of resolution).
CHECK_SIZE = 128
# Gray levels at or below this count as background (MRI background is black or nearly so).
DARK_LEVEL = 25


@dataclass(frozen=True)
class InputCheckLimits:
    """Thresholds of the checks (defaults: none of the Kaggle slices fails)."""

    min_spread: float = 20.0  # p99 - p1 of the gray levels; below: nearly constant
    max_colourfulness: float = 20.0  # Hasler-Süsstrunk colourfulness; above: a colour image
    max_roughness: float = 0.6  # mean neighbour difference / std; uniform noise is about 1.1
    min_head_fraction: float = 0.05  # share of pixels brighter than the background


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler and Süsstrunk's colourfulness of an (H, W, 3) image: 0 for any grey image,
    about 15 for a faintly tinted one, 30-100 for ordinary photographs."""
    rgb = np.asarray(rgb, dtype=np.float32)
    rg = rgb[..., 0] - rgb[..., 1]
    yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def input_features(gray: np.ndarray) -> dict[str, float]:
    """What the checks look at, from the decoded (H, W) uint8 slice."""
    small = cv2.resize(
        np.asarray(gray, np.uint8), (CHECK_SIZE, CHECK_SIZE), interpolation=cv2.INTER_AREA
    ).astype(np.float32)
    low, high = np.percentile(small, [1, 99])
    steps = np.abs(np.diff(small, axis=0)).mean() + np.abs(np.diff(small, axis=1)).mean()
    return {
        "spread": float(high - low),
        "roughness": float(steps / 2 / max(float(small.std()), 1.0)),
        "head_fraction": float(np.mean(small > DARK_LEVEL)),
    }


def failed_checks(
    gray: np.ndarray, colour: float | None = None, limits: InputCheckLimits | None = None
) -> list[str]:
    """The names of the checks `gray` fails (empty: it looks like an MRI slice).

    Args:
        gray: The decoded slice (H, W) uint8.
        colour: Its colourfulness (`colourfulness` of the file's RGB pixels); None for a
            grey file.
        limits: Thresholds (default `InputCheckLimits()`).
    """
    limits = limits or InputCheckLimits()
    features = input_features(gray)
    failed = []
    if features["spread"] < limits.min_spread:
        failed.append(NEARLY_CONSTANT)
        return failed  # the other measures mean nothing on a flat image
    if colour is not None and colour > limits.max_colourfulness:
        failed.append(COLOUR)
    if features["roughness"] > limits.max_roughness:
        failed.append(NOISE)
    if features["head_fraction"] < limits.min_head_fraction:
        failed.append(NO_HEAD)
    return failed
