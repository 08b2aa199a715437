"""Decoding (every kind of input and every kind of bad input) and the shared preprocessing."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from braintumor import imaging
from braintumor.imaging import ImageDecodeError, decode_image
from braintumor.preprocessing import (
    PreprocessSpec,
    apply_clahe,
    crop_to_head,
    pad_to_square,
    preprocess,
)


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def slice_gray(sample_dir) -> np.ndarray:
    return decode_image((sample_dir / "Training/glioma_tumor/gg (145).jpg").read_bytes()).pixels


def test_rgb_jpeg_decodes_to_gray_like_opencv(sample_dir) -> None:
    path = sample_dir / "Training/glioma_tumor/gg (145).jpg"
    decoded = decode_image(path.read_bytes())
    reference = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2GRAY)
    assert decoded.pixels.shape == reference.shape and decoded.format == "JPEG"
    assert np.abs(decoded.pixels.astype(int) - reference).max() <= 2  # decoder rounding only


def test_sixteen_bit_png_is_rescaled_to_the_full_8_bit_range() -> None:
    ramp = np.linspace(1000, 4000, 64 * 64).reshape(64, 64).astype(np.uint16)
    decoded = decode_image(_encode(Image.fromarray(ramp), "PNG"))
    assert decoded.pixels.dtype == np.uint8
    assert decoded.pixels.min() == 0 and decoded.pixels.max() == 255
    assert np.all(np.diff(decoded.pixels.astype(int).ravel()) >= 0)  # order kept


def test_palette_rgba_and_tiff_inputs() -> None:
    gray = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (64, 1))
    palette = Image.fromarray(gray).convert("P")
    assert np.abs(decode_image(_encode(palette, "PNG")).pixels.astype(int) - gray).max() <= 4
    rgba = Image.fromarray(np.dstack([gray, gray, gray, np.full_like(gray, 255)]), "RGBA")
    assert np.array_equal(decode_image(_encode(rgba, "PNG")).pixels, gray)
    transparent = np.dstack([gray, gray, gray, np.zeros_like(gray)])
    assert decode_image(_encode(Image.fromarray(transparent, "RGBA"), "PNG")).pixels.max() == 0
    assert np.array_equal(decode_image(_encode(Image.fromarray(gray), "TIFF")).pixels, gray)


def test_exif_orientation_is_applied() -> None:
    tall = np.zeros((40, 20), dtype=np.uint8)
    tall[:5, :] = 255  # a bright band at the top
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: viewer must rotate 90 degrees clockwise
    data = _encode(Image.fromarray(tall), "PNG", exif=exif.tobytes())
    upright = decode_image(data).pixels
    assert upright.shape == (20, 40)
    assert upright[:, -5:].mean() > 200  # the band is now on the right


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", imaging.EMPTY),
        (b"%PDF-1.4 not an image", imaging.NOT_AN_IMAGE),
    ],
)
def test_bad_bytes_raise_typed_errors(data: bytes, reason: str) -> None:
    with pytest.raises(ImageDecodeError) as error:
        decode_image(data)
    assert error.value.reason == reason


def test_truncated_and_oversized_images_are_refused(sample_dir) -> None:
    data = (sample_dir / "Training/glioma_tumor/gg (145).jpg").read_bytes()
    with pytest.raises(ImageDecodeError) as error:
        decode_image(data[: len(data) // 2])
    assert error.value.reason == imaging.TRUNCATED
    with pytest.raises(ImageDecodeError) as error:
        decode_image(data, max_pixels=1000)
    assert error.value.reason == imaging.TOO_LARGE and "exceeds" in str(error.value)


def test_clahe_equals_opencv(slice_gray: np.ndarray) -> None:
    ours = apply_clahe(slice_gray, clip_limit=3.0, tile_grid=4)
    theirs = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(4, 4)).apply(slice_gray)
    assert np.array_equal(ours, theirs)
    assert not np.array_equal(ours, slice_gray)


def test_preprocess_is_deterministic_and_shaped(slice_gray: np.ndarray) -> None:
    spec = PreprocessSpec(image_size=96, channels=3, variant="clahe", crop_to_head=True)
    first, second = preprocess(slice_gray, spec), preprocess(slice_gray.copy(), spec)
    assert first.shape == (96, 96, 3) and first.dtype == np.float32
    assert np.array_equal(first, second)
    assert np.array_equal(first[..., 0], first[..., 2])
    assert first.min() >= 0 and first.max() <= 255


def test_padding_keeps_aspect_and_cropping_finds_the_head() -> None:
    image = np.zeros((100, 60), dtype=np.uint8)
    image[30:70, 10:50] = 200
    square = pad_to_square(image)
    assert square.shape == (100, 100) and square[30:70, 30:70].min() == 200
    assert crop_to_head(image).shape == (40, 40)
    assert crop_to_head(np.zeros((8, 8), dtype=np.uint8)).shape == (8, 8)  # no head: unchanged


def test_spec_round_trip_and_validation() -> None:
    spec = PreprocessSpec(image_size=128, channels=1, variant="clahe", clahe_clip_limit=3.0)
    assert PreprocessSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="variant"):
        PreprocessSpec(variant="histeq")
    with pytest.raises(ValueError, match="unknown"):
        PreprocessSpec.from_dict({"image_size": 64, "colour": True})
