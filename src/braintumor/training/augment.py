"""Training-time augmentation of batches of [0, 255] float images, seeded and stateless.

`augment_batch(images, seed)` is a pure function of the images and a seed pair: the same
seed gives the same result, so a training run is reproducible. The input pipeline passes
`(config seed, batch counter)` so every batch of every epoch gets fresh, repeatable draws.

Beyond the usual geometry (flip, rotation, zoom, shift) and intensity (brightness, contrast),
it offers what helps a model generalise across scanners and sources: gamma, blur, Gaussian
noise and resolution loss (down- then up-sampling). All parameters are drawn per image.

Appearance invariance (issue 15, the "sequence shortcut": in the Kaggle data nearly every
tumour slice is a contrast-enhanced T1, "no tumour" mostly T2-weighted web images, so a model
can learn "T2 look = no tumour"). These act inside the head only, so the black background
stays exactly as it was: a random intensity curve (`intensity_curve_head_only`), contrast
inversion (T1-like to T2-like), histogram matching to another image of the batch, preferably
of another class, and a smooth multiplicative bias field. The head is the filled region of
the pixels brighter than `head_threshold` (`_head_mask`).

They are written as TF ops because they run inside the tf.data graph: scikit-image's
`exposure.match_histograms` (numpy) cannot run there, nor could TorchIO's `RandomBiasField`,
whose polynomial field this one follows. Per-image standardisation is not an augmentation
here: it exists as model input normalisation (`cnn.input_normalization: standardize`, the
`BackboneNormalization` layer), applied the same way in training and serving.
"""

from __future__ import annotations

import math

import tensorflow as tf

from braintumor.training.augment_spec import AugmentSpec

# Stream ids, so each kind of draw uses its own independent stateless stream.
_FLIP_H, _FLIP_V, _ANGLE, _ZOOM, _SHIFT = 1, 2, 3, 4, 5
_BRIGHT, _CONTRAST, _GAMMA, _BLUR, _BLUR_MIX = 6, 7, 8, 9, 10
_NOISE_STD, _NOISE, _RES, _RES_SCALE = 11, 12, 13, 14
_CURVE, _CURVE_POINTS = 15, 16
_INVERT, _MATCH, _MATCH_PARTNER, _BIAS, _BIAS_COEFFICIENTS = 17, 18, 19, 20, 21
_HISTOGRAM_BINS = 256


def _uniform(seed: tf.Tensor, stream: int, shape, low: float, high: float) -> tf.Tensor:
    pair = tf.stack([seed[0], seed[1] * 64 + stream])
    return tf.random.stateless_uniform(shape, seed=pair, minval=low, maxval=high)


def _per_image(values: tf.Tensor) -> tf.Tensor:
    return tf.reshape(values, (-1, 1, 1, 1))


def augment_batch(
    images: tf.Tensor, seed: tf.Tensor, spec: AugmentSpec, labels: tf.Tensor | None = None
) -> tf.Tensor:
    """Augment a (batch, height, width, channels) float32 batch in [0, 255].

    Args:
        images: float32 images in [0, 255].
        seed: int64 tensor of shape (2,), e.g. (config seed, batch index).
        spec: which augmentations, how strong.
        labels: the batch's labels, one-hot (batch, classes) or integer (batch,); only
            histogram matching reads them (to pick a partner of another class). They are
            not changed: the function returns the images alone.
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
    if spec.needs_head_mask:
        x = _appearance(x, seed, spec, labels)
    elif spec.intensity_curve_probability > 0:
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


def _intensity_curve(
    x: tf.Tensor, seed: tf.Tensor, spec: AugmentSpec, head: tf.Tensor | None = None
) -> tf.Tensor:
    """Map intensities through a random piecewise-linear curve through (0, 0).

    The other control points are drawn uniformly in [0.05, 1], unsorted, so a curve may be
    monotone (a gamma-like change) or not (dark tissue turns bright, as CSF does from T1 to T2).
    With a soft `head` mask (`intensity_curve_head_only`) the level of black is drawn too and
    the curve acts inside the head only.
    """
    batch = tf.shape(x)[0]
    points = max(2, spec.intensity_curve_points)
    if head is None:
        values = _uniform(seed, _CURVE_POINTS, (batch, points - 1), 0.05, 1.0)
        curve = tf.concat([tf.zeros((batch, 1)), values], axis=1) * 255.0  # (batch, points)
    else:
        curve = _uniform(seed, _CURVE_POINTS, (batch, points), 0.05, 1.0) * 255.0
    position = tf.clip_by_value(x, 0.0, 255.0) / 255.0 * (points - 1)
    low = tf.minimum(tf.floor(position), points - 2)
    fraction = position - low
    flat_low = tf.reshape(tf.cast(low, tf.int32), (batch, -1))
    left = tf.reshape(tf.gather(curve, flat_low, batch_dims=1), tf.shape(x))
    right = tf.reshape(tf.gather(curve, flat_low + 1, batch_dims=1), tf.shape(x))
    mapped = left + fraction * (right - left)
    chosen = _uniform(seed, _CURVE, (batch,), 0.0, 1.0) < spec.intensity_curve_probability
    if head is not None:
        return _blend(x, mapped, head, chosen)
    return tf.where(_per_image(chosen), mapped, x)


def _blend(x: tf.Tensor, mapped: tf.Tensor, head: tf.Tensor, chosen: tf.Tensor) -> tf.Tensor:
    """`mapped` inside the (soft) head of the chosen images, `x` everywhere else."""
    weight = head * _per_image(tf.cast(chosen, tf.float32))
    return x + weight * (mapped - x)


def _window3(m: tf.Tensor, reduce, pad: float) -> tf.Tensor:
    """`reduce` (tf.minimum or tf.maximum) over a 3x3 window, outside pixels valued `pad`.

    Separable, on shifted slices: much cheaper on CPU than stride-1 pooling of one channel.
    """
    p = tf.pad(m, [[0, 0], [1, 1], [0, 0], [0, 0]], constant_values=pad)
    m = reduce(reduce(p[:, :-2], p[:, 1:-1]), p[:, 2:])
    p = tf.pad(m, [[0, 0], [0, 0], [1, 1], [0, 0]], constant_values=pad)
    return reduce(reduce(p[:, :, :-2], p[:, :, 1:-1]), p[:, :, 2:])


def _head_mask(x: tf.Tensor, threshold: float) -> tuple[tf.Tensor, tf.Tensor]:
    """(binary, soft) head masks of shape (batch, height, width, 1).

    The pixels brighter than `threshold` (after a 3x3 opening that drops specks of noise) are
    filled row- and column-wise: a pixel is head when it lies between two head pixels of its
    row and between two of its column. That fills dark tissue inside the head (ventricles,
    CSF) cheaply, where a threshold alone would leave holes, and leaves a text marker in a
    corner as small as it was. The soft mask is 0.5 on the outermost ring of head pixels,
    0.75 on the next and 1 inside, so a remapped head has no hard seam; outside it is 0.
    """
    bright = tf.cast(tf.reduce_max(x, axis=-1, keepdims=True) > threshold, tf.float32)
    opened = _window3(_window3(bright, tf.minimum, 1.0), tf.maximum, 0.0)
    on = opened > 0
    height, width = tf.shape(x)[1], tf.shape(x)[2]
    column = tf.range(width)[None, None, :, None]
    row = tf.range(height)[None, :, None, None]
    left = tf.reduce_min(tf.where(on, column, width), axis=2, keepdims=True)
    right = tf.reduce_max(tf.where(on, column, -1), axis=2, keepdims=True)
    top = tf.reduce_min(tf.where(on, row, height), axis=1, keepdims=True)
    bottom = tf.reduce_max(tf.where(on, row, -1), axis=1, keepdims=True)
    inside = (column >= left) & (column <= right) & (row >= top) & (row <= bottom)
    binary = tf.cast(inside, tf.float32)
    inner = _window3(binary, tf.minimum, 1.0)
    soft = binary * (0.5 + 0.25 * inner + 0.25 * _window3(inner, tf.minimum, 1.0))
    return binary, soft


def _appearance(
    x: tf.Tensor, seed: tf.Tensor, spec: AugmentSpec, labels: tf.Tensor | None
) -> tf.Tensor:
    """The head-only appearance changes, each with its own probability, in a fixed order."""
    binary, soft = _head_mask(x, spec.head_threshold)
    batch = tf.shape(x)[0]
    if spec.histogram_match_probability > 0:
        chosen = _uniform(seed, _MATCH, (batch,), 0.0, 1.0) < spec.histogram_match_probability
        mapped, has_target = _match_histograms(x, binary, _partners(seed, labels, batch))
        x = _blend(x, mapped, soft, chosen & has_target)
    if spec.intensity_curve_probability > 0:
        x = _intensity_curve(x, seed, spec, head=soft if spec.intensity_curve_head_only else None)
    if spec.invert_probability > 0:
        chosen = _uniform(seed, _INVERT, (batch,), 0.0, 1.0) < spec.invert_probability
        x = _blend(x, _invert(x, binary), soft, chosen)
    if spec.bias_field_probability > 0:
        chosen = _uniform(seed, _BIAS, (batch,), 0.0, 1.0) < spec.bias_field_probability
        x = _blend(x, x * _bias_field(x, seed, spec), soft, chosen)
    return x


def _invert(x: tf.Tensor, head: tf.Tensor) -> tf.Tensor:
    """Reverse the order of the head's intensities within their own range [lo, hi]."""
    inside = tf.broadcast_to(head > 0, tf.shape(x))
    lo = tf.reduce_min(tf.where(inside, x, 255.0), axis=[1, 2, 3], keepdims=True)
    hi = tf.reduce_max(tf.where(inside, x, 0.0), axis=[1, 2, 3], keepdims=True)
    return lo + hi - x


def _partners(seed: tf.Tensor, labels: tf.Tensor | None, batch: tf.Tensor) -> tf.Tensor:
    """For each image, a random other image of the batch, of another class when there is one."""
    scores = _uniform(seed, _MATCH_PARTNER, (batch, batch), 0.0, 1.0)
    if labels is not None:
        labels = tf.convert_to_tensor(labels)
        if labels.shape.rank == 2:
            labels = tf.argmax(labels, axis=1)
        labels = tf.cast(labels, tf.int64)
        scores += 2.0 * tf.cast(labels[:, None] != labels[None, :], tf.float32)
    scores -= 4.0 * tf.eye(batch)  # itself only in a batch of one
    return tf.argmax(scores, axis=1, output_type=tf.int32)


def _match_histograms(
    x: tf.Tensor, head: tf.Tensor, target: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """Map each image's head histogram onto that of image `target[i]` (classic matching).

    Histograms of 256 unit bins centred on the integers, over the binary `head` mask; a pixel
    value v goes to the target's quantile at v's (interpolated) rank in its own head, as
    `skimage.exposure.match_histograms` does. Returns the mapped images and, per image,
    whether its target has a head at all (an all-black target gives nothing to match).
    """
    shape = tf.shape(x)
    batch = shape[0]
    bins = _HISTOGRAM_BINS
    flat = tf.reshape(x, (batch, -1))
    weight = tf.reshape(tf.broadcast_to(head, shape), (batch, -1))
    index = tf.cast(tf.clip_by_value(tf.floor(flat + 0.5), 0.0, bins - 1.0), tf.int32)
    segments = index + bins * tf.range(batch)[:, None]
    histogram = tf.reshape(
        tf.math.unsorted_segment_sum(weight, segments, batch * bins), (batch, bins)
    )
    count = tf.reduce_sum(histogram, axis=1, keepdims=True)
    density = histogram / tf.maximum(count, 1.0)
    # cdf[:, k]: the fraction of head pixels below the bin edge k - 0.5.
    cdf = tf.concat([tf.zeros((batch, 1)), tf.cumsum(density, axis=1)], axis=1)
    within = flat + 0.5 - tf.cast(index, tf.float32)  # position in its bin, [0, 1)
    rank = tf.gather(cdf, index, batch_dims=1) + within * tf.gather(density, index, batch_dims=1)
    rank = tf.clip_by_value(rank, 1e-6, 1.0)
    target_cdf = tf.gather(cdf, target)
    upper = tf.clip_by_value(tf.searchsorted(target_cdf, rank, side="left"), 1, bins)
    below = tf.gather(target_cdf, upper - 1, batch_dims=1)
    above = tf.gather(target_cdf, upper, batch_dims=1)
    fraction = (rank - below) / tf.maximum(above - below, 1e-6)
    value = tf.cast(upper, tf.float32) - 1.5 + tf.clip_by_value(fraction, 0.0, 1.0)
    mapped = tf.reshape(tf.clip_by_value(value, 0.0, 255.0), shape)
    has_target = tf.gather(count[:, 0], target) > 0
    return mapped, has_target


def _bias_field(x: tf.Tensor, seed: tf.Tensor, spec: AugmentSpec) -> tf.Tensor:
    """A smooth multiplicative field exp(p(u, v)), one per image, shape (batch, h, w, 1).

    p is a random polynomial of total order `bias_field_order` in coordinates scaled to
    [-1, 1], coefficients uniform in [-c, c]: TorchIO's `RandomBiasField`, in 2-D.
    """
    batch = tf.shape(x)[0]
    v = tf.linspace(-1.0, 1.0, tf.shape(x)[1])[:, None]
    u = tf.linspace(-1.0, 1.0, tf.shape(x)[2])[None, :]
    order = max(0, spec.bias_field_order)
    terms = tf.stack(
        [v**i * u**j for i in range(order + 1) for j in range(order + 1 - i)], axis=0
    )  # (terms, h, w)
    c = spec.bias_field_coefficients
    coefficients = _uniform(seed, _BIAS_COEFFICIENTS, (batch, terms.shape[0]), -c, c)
    log_field = tf.einsum("bt,thw->bhw", coefficients, terms)
    return tf.exp(log_field)[..., None]
