"""Training-time augmentation of batches of [0, 255] float images, seeded and stateless.

`augment_batch(images, seed)` is a pure function of the images and a seed pair: the same
seed gives the same result, so a training run is reproducible. The input pipeline passes
`(config seed, batch counter)` so every batch of every epoch gets fresh, repeatable draws.

Beyond the usual geometry (flip, rotation, zoom, shift) and intensity (brightness, contrast),
it offers what helps a model generalise across scanners and sources: gamma, blur, Gaussian
noise and resolution loss (down- then up-sampling). All parameters are drawn per image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import tensorflow as tf


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

    @property
    def geometric(self) -> bool:
        return self.rotation_degrees > 0 or self.zoom > 0 or self.translate > 0


# Stream ids, so each kind of draw uses its own independent stateless stream.
_FLIP_H, _FLIP_V, _ANGLE, _ZOOM, _SHIFT = 1, 2, 3, 4, 5
_BRIGHT, _CONTRAST, _GAMMA, _BLUR, _BLUR_MIX = 6, 7, 8, 9, 10
_NOISE_STD, _NOISE, _RES, _RES_SCALE = 11, 12, 13, 14
_CURVE, _CURVE_POINTS = 15, 16


def _uniform(seed: tf.Tensor, stream: int, shape, low: float, high: float) -> tf.Tensor:
    pair = tf.stack([seed[0], seed[1] * 64 + stream])
    return tf.random.stateless_uniform(shape, seed=pair, minval=low, maxval=high)


def _per_image(values: tf.Tensor) -> tf.Tensor:
    return tf.reshape(values, (-1, 1, 1, 1))


def augment_batch(images: tf.Tensor, seed: tf.Tensor, spec: AugmentSpec) -> tf.Tensor:
    """Augment a (batch, height, width, channels) float32 batch in [0, 255].

    Args:
        images: float32 images in [0, 255].
        seed: int64 tensor of shape (2,), e.g. (config seed, batch index).
        spec: which augmentations, how strong.
    """
    seed = tf.cast(seed, tf.int64)
    x = tf.convert_to_tensor(images, tf.float32)
    batch = tf.shape(x)[0]
    if spec.flip_horizontal:
        flip = _uniform(seed, _FLIP_H, (batch,), 0.0, 1.0) < 0.5
        x = tf.where(_per_image(flip), tf.reverse(x, axis=[2]), x)
    if spec.flip_vertical:
        flip = _uniform(seed, _FLIP_V, (batch,), 0.0, 1.0) < 0.5
        x = tf.where(_per_image(flip), tf.reverse(x, axis=[1]), x)
    if spec.geometric:
        x = _affine(x, seed, spec)
    if spec.resolution_probability > 0:
        x = _resolution(x, seed, spec)
    if spec.blur_probability > 0:
        x = _blur(x, seed, spec)
    if spec.intensity_curve_probability > 0:
        x = _intensity_curve(x, seed, spec)
    if spec.brightness > 0:
        x = (
            x
            + _per_image(_uniform(seed, _BRIGHT, (batch,), -spec.brightness, spec.brightness))
            * 255.0
        )
    if spec.contrast > 0:
        factor = _uniform(seed, _CONTRAST, (batch,), 1.0 - spec.contrast, 1.0 + spec.contrast)
        mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
        x = (x - mean) * _per_image(factor) + mean
    if spec.gamma > 0:
        gamma = tf.exp(_uniform(seed, _GAMMA, (batch,), -spec.gamma, spec.gamma))
        x = 255.0 * tf.pow(tf.clip_by_value(x, 0.0, 255.0) / 255.0, _per_image(gamma))
    if spec.noise_std > 0:
        std = _uniform(seed, _NOISE_STD, (batch,), 0.0, spec.noise_std) * 255.0
        pair = tf.stack([seed[0], seed[1] * 64 + _NOISE])
        x = x + tf.random.stateless_normal(tf.shape(x), seed=pair) * _per_image(std)
    return tf.clip_by_value(x, 0.0, 255.0)


def _affine(x: tf.Tensor, seed: tf.Tensor, spec: AugmentSpec) -> tf.Tensor:
    """Rotation about the centre, zoom and shift in one bilinear warp; black fill."""
    batch = tf.shape(x)[0]
    height = tf.cast(tf.shape(x)[1], tf.float32)
    width = tf.cast(tf.shape(x)[2], tf.float32)
    limit = math.radians(spec.rotation_degrees)
    angle = _uniform(seed, _ANGLE, (batch,), -limit, limit)
    zoom = _uniform(seed, _ZOOM, (batch,), 1.0 - spec.zoom, 1.0 + spec.zoom)
    shift = _uniform(seed, _SHIFT, (batch, 2), -spec.translate, spec.translate)
    tx, ty = shift[:, 0] * width, shift[:, 1] * height
    cx, cy = (width - 1.0) / 2.0, (height - 1.0) / 2.0
    cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
    # Output pixel (u, v) samples input c + R(angle) (p - c) / zoom - shift.
    transforms = tf.stack(
        [
            cos,
            -sin,
            cx - cos * cx + sin * cy - tx,
            sin,
            cos,
            cy - sin * cx - cos * cy - ty,
            tf.zeros_like(cos),
            tf.zeros_like(cos),
        ],
        axis=1,
    )
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=x,
        transforms=transforms,
        output_shape=tf.shape(x)[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )


def _gaussian_kernel(sigma: float, channels: int) -> tf.Tensor:
    radius = max(1, math.ceil(2.5 * sigma))
    positions = tf.range(-radius, radius + 1, dtype=tf.float32)
    weights = tf.exp(-(positions**2) / (2.0 * sigma**2))
    weights = weights / tf.reduce_sum(weights)
    kernel = weights[:, None] * weights[None, :]
    return tf.tile(kernel[:, :, None, None], [1, 1, channels, 1])


def _blur(x: tf.Tensor, seed: tf.Tensor, spec: AugmentSpec) -> tf.Tensor:
    batch = tf.shape(x)[0]
    kernel = _gaussian_kernel(spec.blur_sigma, int(x.shape[-1]))
    blurred = tf.nn.depthwise_conv2d(x, kernel, strides=[1, 1, 1, 1], padding="SAME")
    chosen = _uniform(seed, _BLUR, (batch,), 0.0, 1.0) < spec.blur_probability
    mix = _uniform(seed, _BLUR_MIX, (batch,), 0.0, 1.0) * tf.cast(chosen, tf.float32)
    return x + _per_image(mix) * (blurred - x)


def _resolution(x: tf.Tensor, seed: tf.Tensor, spec: AugmentSpec) -> tf.Tensor:
    """Lose detail as a low-resolution scan would: one random scale per batch."""
    batch = tf.shape(x)[0]
    size = tf.shape(x)[1:3]
    scale = _uniform(seed, _RES_SCALE, (), spec.resolution_min_scale, 1.0)
    small = tf.maximum(tf.cast(tf.cast(size, tf.float32) * scale, tf.int32), 8)
    degraded = tf.image.resize(tf.image.resize(x, small, method="area"), size, method="bilinear")
    chosen = _uniform(seed, _RES, (batch,), 0.0, 1.0) < spec.resolution_probability
    return tf.where(_per_image(chosen), degraded, x)


def _intensity_curve(x: tf.Tensor, seed: tf.Tensor, spec: AugmentSpec) -> tf.Tensor:
    """Map intensities through a random piecewise-linear curve through (0, 0).

    The other control points are drawn uniformly in [0.05, 1], unsorted, so a curve may be
    monotone (a gamma-like change) or not (dark tissue turns bright, as CSF does from T1 to T2).
    """
    batch = tf.shape(x)[0]
    points = max(2, spec.intensity_curve_points)
    values = _uniform(seed, _CURVE_POINTS, (batch, points - 1), 0.05, 1.0)
    curve = tf.concat([tf.zeros((batch, 1)), values], axis=1) * 255.0  # (batch, points)
    position = tf.clip_by_value(x, 0.0, 255.0) / 255.0 * (points - 1)
    low = tf.minimum(tf.floor(position), points - 2)
    fraction = position - low
    flat_low = tf.reshape(tf.cast(low, tf.int32), (batch, -1))
    left = tf.reshape(tf.gather(curve, flat_low, batch_dims=1), tf.shape(x))
    right = tf.reshape(tf.gather(curve, flat_low + 1, batch_dims=1), tf.shape(x))
    mapped = left + fraction * (right - left)
    chosen = _uniform(seed, _CURVE, (batch,), 0.0, 1.0) < spec.intensity_curve_probability
    return tf.where(_per_image(chosen), mapped, x)
