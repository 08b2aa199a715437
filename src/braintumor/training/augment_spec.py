"""`AugmentSpec`: the strengths of each training-time augmentation, as plain data (no
TensorFlow here: the run config validates against it; `training.augment` applies it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AugmentSpec:
    """Strengths of each augmentation; zero (or False) switches one off."""

    flip_horizontal: bool = True
    flip_vertical: bool = False
    rotation_degrees: float = 10.0  # uniform in [-r, r]
    zoom: float = 0.1  # scale uniform in [1 - z, 1 + z]
    translate: float = 0.05  # shift uniform in [-t, t] of the image size
    brightness: float = 0.1  # add uniform [-b, b] * 255
    contrast: float = 0.1  # scale about the image mean by uniform [1 - c, 1 + c]
    gamma: float = 0.0  # gamma = exp(uniform [-g, g])
    blur_probability: float = 0.0
    blur_sigma: float = 1.5  # a blurred image is a random mix of sharp and this Gaussian blur
    noise_std: float = 0.0  # Gaussian noise, std uniform in [0, n] * 255
    resolution_probability: float = 0.0
    resolution_min_scale: float = 0.35  # down-sample to scale uniform [m, 1], then back up
    # Random intensity curve (black stays black): tissue contrast changes as between MRI
    # sequences (T1/T2/FLAIR) and scanners, so the model cannot lean on one sequence's look.
    intensity_curve_probability: float = 0.0
    intensity_curve_points: int = 5
    # Apply the curve inside the head only (background untouched), with a random level for
    # black too, so dark tissue (CSF in T1) may turn bright (as in T2).
    intensity_curve_head_only: bool = False
    # Appearance invariance, inside the head (see the module docstring).
    head_threshold: float = 20.0  # head = filled region of pixels above this (0..255)
    invert_probability: float = 0.0  # head intensities v -> lo + hi - v (lo, hi: head range)
    histogram_match_probability: float = 0.0  # to another image of the batch, other class
    bias_field_probability: float = 0.0
    bias_field_order: int = 3  # polynomial order of the log field
    # Polynomial coefficients uniform in [-c, c]; 0.3 makes the field vary by a factor of
    # about 3 across the image (median), TorchIO's default of 0.5 by about 7.
    bias_field_coefficients: float = 0.3

    @property
    def geometric(self) -> bool:
        return self.rotation_degrees > 0 or self.zoom > 0 or self.translate > 0

    @property
    def needs_head_mask(self) -> bool:
        """True when some head-only appearance change is on (then the head mask is computed)."""
        curve_in_head = self.intensity_curve_probability > 0 and self.intensity_curve_head_only
        return curve_in_head or (
            self.invert_probability > 0
            or self.histogram_match_probability > 0
            or self.bias_field_probability > 0
        )
