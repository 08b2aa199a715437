"""The upload formats the service promises: JPEG, PNG, TIFF, 8/16-bit, gray/RGB/RGBA/palette,
EXIF orientation and DICOM (pydicom's own MR example files)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from braintumor import imaging
from braintumor.imaging import ImageDecodeError, decode_image


def dicom(name: str) -> bytes:
    """Bytes of one of pydicom's shipped test files (skip when that file is absent)."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"pydicom's test file {name} is not installed")
    return Path(path).read_bytes()


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def slice_gray(sample_dir) -> np.ndarray:
    """A real MRI slice from the sample, decoded once (uint8, H x W)."""
    path = sample_dir / "Testing" / "glioma_tumor" / "image(27).jpg"
    return decode_image(path.read_bytes()).pixels


def reference_luma(data: bytes) -> np.ndarray:
    """The definition decode_image's fast paths must keep: decode to RGB, ITU-R 601 luma in
    floating point, rounded."""
    rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float64)
    luma = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    return np.clip(np.rint(luma), 0, 255).astype(np.uint8)


def test_fast_jpeg_luma_equals_the_reference_on_the_sample(sample_dir):
    paths = [p for p in sample_dir.glob("*/*/*.jpg") if not p.name.startswith("planted_")]
    assert len(paths) >= 30
    for path in paths:
        data = path.read_bytes()
        np.testing.assert_array_equal(decode_image(data).pixels, reference_luma(data))


def test_colour_images_stay_within_one_grey_level_of_the_reference():
    rng = np.random.default_rng(3)
    colour = rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    for fmt in ("PNG", "JPEG"):
        data = encode(Image.fromarray(colour), fmt, **({"quality": 95} if fmt == "JPEG" else {}))
        diff = decode_image(data).pixels.astype(int) - reference_luma(data).astype(int)
        assert np.abs(diff).max() <= 1 if fmt == "PNG" else np.abs(diff).mean() < 1.0


@pytest.mark.slow
@pytest.mark.full_data
def test_fast_jpeg_luma_equals_the_reference_on_the_full_dataset(full_dataset_dir):
    paths = sorted(full_dataset_dir.glob("*/*/*.jpg"))
    assert len(paths) > 3000
    worst = max(
        int(np.abs(decode_image(d).pixels.astype(int) - reference_luma(d).astype(int)).max())
        for d in (path.read_bytes() for path in paths)
    )
    assert worst == 0


def test_rgb_file_and_its_grayscale_copy_decode_to_equal_pixels(slice_gray):
    rgb = Image.fromarray(np.dstack([slice_gray] * 3))
    as_rgb = decode_image(encode(rgb, "PNG")).pixels
    as_gray = decode_image(encode(Image.fromarray(slice_gray), "PNG")).pixels
    np.testing.assert_array_equal(as_rgb, as_gray)


def test_rgb_image_that_does_not_span_full_range_is_not_stretched():
    dim = np.full((20, 20), 100, dtype=np.uint8)
    dim[5:10, 5:10] = 140
    decoded = decode_image(encode(Image.fromarray(np.dstack([dim] * 3)), "PNG")).pixels
    assert decoded.min() == 100 and decoded.max() == 140


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_grayscale_is_rescaled_to_8_bit(fmt, slice_gray):
    wide = slice_gray.astype(np.uint16) * 257  # the same picture on 16 bits
    decoded = decode_image(encode(Image.fromarray(wide), fmt))
    assert decoded.mode.startswith("I;16") and decoded.format == fmt
    assert decoded.pixels.dtype == np.uint8 and decoded.pixels.shape == slice_gray.shape
    low, high = int(slice_gray.min()), int(slice_gray.max())
    expected = np.rint((slice_gray.astype(np.float64) - low) * 255 / (high - low))
    assert np.abs(decoded.pixels.astype(int) - expected).max() <= 1


def test_tiff_8_bit_and_lzw_compressed(slice_gray):
    for options in ({}, {"compression": "tiff_lzw"}):
        decoded = decode_image(encode(Image.fromarray(slice_gray), "TIFF", **options))
        np.testing.assert_array_equal(decoded.pixels, slice_gray)


def test_palette_and_rgba_images(slice_gray):
    palette = Image.fromarray(slice_gray).convert("P")
    decoded = decode_image(encode(palette, "PNG")).pixels
    assert np.abs(decoded.astype(int) - slice_gray.astype(int)).max() <= 2
    alpha = np.full_like(slice_gray, 255)
    rgba = Image.fromarray(np.dstack([slice_gray] * 3 + [alpha]))
    np.testing.assert_array_equal(decode_image(encode(rgba, "PNG")).pixels, slice_gray)


def test_transparent_pixels_become_black_background():
    rgba = np.zeros((10, 10, 4), dtype=np.uint8)
    rgba[..., :3] = 200
    rgba[:5, :, 3] = 255  # top half opaque, bottom half transparent
    decoded = decode_image(encode(Image.fromarray(rgba), "PNG")).pixels
    assert (decoded[:5] == 200).all() and (decoded[5:] == 0).all()


def test_exif_orientation_is_applied():
    picture = np.zeros((30, 60), dtype=np.uint8)
    picture[:, :10] = 255  # a bright band on the left of a landscape image
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = encode(Image.fromarray(picture).convert("RGB"), "JPEG", exif=exif, quality=95)
    decoded = decode_image(data).pixels
    assert decoded.shape == (60, 30)  # displayed portrait
    assert decoded[:10].mean() > 200 and decoded[-10:].mean() < 50  # band now on top


@pytest.mark.parametrize(
    "name",
    [
        "MR_small.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_expb.dcm",
        "MR_small_implicit.dcm",
        "MR_small_RLE.dcm",
        "MR_small_padded.dcm",
    ],
)
def test_dicom_mr_examples_shipped_with_pydicom(name):
    decoded = decode_image(dicom(name))
    assert decoded.format == "DICOM" and decoded.mode == "DICOM/MONOCHROME2"
    assert decoded.pixels.shape == (64, 64) and decoded.pixels.dtype == np.uint8
    assert decoded.pixels.min() == 0 and decoded.pixels.max() == 255


def test_dicom_variants_decode_to_the_same_image():
    reference = decode_image(dicom("MR_small.dcm")).pixels
    for name in ("MR_small_bigendian.dcm", "MR_small_RLE.dcm", "MR_small_implicit.dcm"):
        other = decode_image(dicom(name)).pixels
        np.testing.assert_array_equal(other, reference)


def test_truncated_dicom_is_reported_as_truncated_on_one_line():
    data = dicom("MR_truncated.dcm")
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(data)
    assert caught.value.reason == imaging.TRUNCATED
    assert "\n" not in str(caught.value)


def test_dicom_pixel_limit_counts_every_frame():
    data = dicom("MR_small.dcm")  # 64 x 64 = 4,096 pixels
    assert decode_image(data, max_pixels=4096).pixels.shape == (64, 64)
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(data, max_pixels=4095)
    assert caught.value.reason == imaging.TOO_LARGE
