"""Bytes to pixels: decode an image file (JPEG, PNG, TIFF, BMP, DICOM, 8/16-bit, any mode)
into one grayscale uint8 array, or raise `ImageDecodeError` with a reason a person can act on.

Ingestion uses it to validate and quarantine files; serving uses it to read uploads. MRI
slices are grayscale, so everything is reduced to one channel here; `preprocessing` turns
the result into the model's input.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Refuse images above this many pixels before decoding them (decompression bombs).
DEFAULT_MAX_PIXELS = 40_000_000

# Reasons, as written to quarantine.csv and returned by the service.
EMPTY = "empty_file"
NOT_AN_IMAGE = "not_an_image"
TRUNCATED = "truncated"
UNDECODABLE = "undecodable"
TOO_LARGE = "too_many_pixels"


class ImageDecodeError(ValueError):
    """An input that is not a usable image. `reason` is one of the constants above."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image reduced to grayscale, with what the file said about itself."""

    pixels: np.ndarray  # (H, W) uint8
    width: int
    height: int
    mode: str  # the file's own mode: "RGB", "L", "I;16", "DICOM/MONOCHROME2", ...
    format: str  # "JPEG", "PNG", "DICOM", ...
    # Hasler-Süsstrunk colourfulness of a colour file (0 for grey content), when asked for
    # (`decode_image(measure_colour=True)`); None for grey files or when not measured.
    colourfulness: float | None = None


def is_dicom(data: bytes) -> bool:
    return len(data) >= 132 and data[128:132] == b"DICM"


COLOUR_MODES = ("RGB", "RGBA", "YCbCr", "CMYK", "P", "LAB", "HSV", "PA")
# Colourfulness is measured on a copy at most this many pixels wide, and for JPEG at least
# half as wide (cheap, and enough).
_COLOUR_SIDE = 128
# OpenCV's reduced-size JPEG decodes (DCT scaling), largest first: (factor, imread flag).
_REDUCED = (
    (8, cv2.IMREAD_REDUCED_COLOR_8),
    (4, cv2.IMREAD_REDUCED_COLOR_4),
    (2, cv2.IMREAD_REDUCED_COLOR_2),
)


def decode_image(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, measure_colour: bool = False
) -> DecodedImage:
    """Decode `data` fully (so truncation is caught) into a grayscale uint8 image.

    `measure_colour` also measures how colourful a colour file is (serving's input checks:
    a colour photograph is no MRI slice), from a small copy decoded separately."""
    if not data:
        raise ImageDecodeError(EMPTY, "the file has zero bytes")
    if is_dicom(data):
        return _decode_dicom(data, max_pixels)
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageDecodeError(
            NOT_AN_IMAGE, "not a recognised image format (JPEG, PNG, TIFF, BMP or DICOM)"
        ) from None
    except Exception as exc:  # Pillow raises many kinds on garbage headers
        raise ImageDecodeError(UNDECODABLE, f"cannot read the image header ({exc})") from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageDecodeError(
            TOO_LARGE, f"{width}x{height} = {width * height:,} pixels exceeds {max_pixels:,}"
        )
    mode, fmt = image.mode, image.format or "unknown"
    colour = None
    if measure_colour and mode in COLOUR_MODES:
        colour = _colourfulness(data, fmt, min(width, height))
    if fmt == "JPEG" and mode in ("RGB", "YCbCr"):
        # Let libjpeg output the luma plane directly: the same gray values as decoding RGB
        # and converting (checked on the dataset), at about half the cost.
        image.draft("L", image.size)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
    except OSError as exc:
        message = str(exc)
        if "truncated" in message:
            raise ImageDecodeError(TRUNCATED, f"the image data ends early ({message})") from None
        raise ImageDecodeError(UNDECODABLE, f"cannot decode the image data ({message})") from None
    except Exception as exc:
        raise ImageDecodeError(UNDECODABLE, f"cannot decode the image data ({exc})") from None
    with contextlib.suppress(Exception):  # a broken EXIF block must not reject a readable image
        image = ImageOps.exif_transpose(image)
    return DecodedImage(to_grayscale_uint8(image), width, height, mode, fmt, colour)


def _colourfulness(data: bytes, fmt: str, side: int) -> float | None:
    from braintumor.guard.input_checks import colourfulness

    try:
        if fmt == "JPEG":
            # libjpeg's DCT-domain downscaling through OpenCV, to no less than half of
            # _COLOUR_SIDE: about a third of the cost of Pillow's draft-and-convert below,
            # which the service pays on every colour JPEG.
            flag = next(
                (flag for factor, flag in _REDUCED if side >= factor * _COLOUR_SIDE // 2),
                cv2.IMREAD_COLOR,
            )
            bgr = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
            if bgr is not None and bgr.ndim == 3:
                return colourfulness(bgr[..., ::-1])
        image = Image.open(io.BytesIO(data))
        image.draft("RGB", (_COLOUR_SIDE, _COLOUR_SIDE))  # JPEG: decoded at 1/2..1/8 scale
        image = image.convert("RGB")
        image.thumbnail((_COLOUR_SIDE, _COLOUR_SIDE))
        return colourfulness(np.asarray(image))
    except Exception:  # the main decode reports what is wrong with the file
        return None


def to_grayscale_uint8(image: Image.Image | np.ndarray) -> np.ndarray:
    """Any Pillow image or array (8/16-bit, float, RGB(A), palette) to (H, W) uint8.

    8-bit inputs keep their values (colour -> ITU-R 601 luma, as Pillow's and OpenCV's
    grayscale conversions); wider ranges (16-bit, float, DICOM) are rescaled min..max.
    """
    if isinstance(image, Image.Image):
        if image.mode == "P":
            image = image.convert("RGBA")
        if image.mode in ("RGBA", "LA", "PA"):
            # Transparent pixels become background (black), as in an MRI slice.
            background = Image.new("RGBA", image.size, (0, 0, 0, 255))
            image = Image.alpha_composite(background, image.convert("RGBA"))
        if image.mode in ("RGB", "RGBA", "CMYK", "YCbCr", "HSV", "LAB", "1"):
            # Pillow's C conversion: ITU-R 601 luma, rounded (as the array path below).
            image = image.convert("RGB").convert("L")
        array = np.asarray(image)
    else:
        array = np.asarray(image)
    if array.ndim == 3:
        if array.shape[2] == 4:
            alpha = array[..., 3:4].astype(np.float64) / _dtype_max(array)
            array = (array[..., :3] * alpha).astype(array.dtype)
        if array.shape[2] >= 3:
            # ITU-R 601 luma, as Pillow's convert("L") and OpenCV's RGB2GRAY. Integer input
            # stays in its own range, so an RGB file and its grayscale copy give equal pixels
            # (a float result here would be min-max stretched below).
            rgb = array[..., :3].astype(np.float32)
            luma = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
            if np.issubdtype(array.dtype, np.integer):
                top = np.iinfo(array.dtype).max
                luma = np.clip(np.rint(luma), 0, top).astype(array.dtype)
            array = luma
        else:
            array = array[..., 0]
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    return _rescale_to_uint8(array)


def _dtype_max(array: np.ndarray) -> float:
    return float(np.iinfo(array.dtype).max) if np.issubdtype(array.dtype, np.integer) else 1.0


def _rescale_to_uint8(array: np.ndarray) -> np.ndarray:
    """Linear rescale of a wider-range image to 0..255 (min to 0, max to 255)."""
    values = array.astype(np.float64)
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _decode_dicom(data: bytes, max_pixels: int) -> DecodedImage:
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        dataset = pydicom.dcmread(io.BytesIO(data))
        rows, cols = int(dataset.Rows), int(dataset.Columns)
        frames = int(getattr(dataset, "NumberOfFrames", 1) or 1)
        if rows * cols * frames > max_pixels:
            raise ImageDecodeError(
                TOO_LARGE,
                f"{frames} frame(s) of {cols}x{rows} = {rows * cols * frames:,} pixels "
                f"exceeds {max_pixels:,}",
            )
        pixels = dataset.pixel_array
        if pixels.ndim == 3 and getattr(dataset, "SamplesPerPixel", 1) == 1:
            pixels = pixels[pixels.shape[0] // 2]  # a multi-frame series: the middle slice
        pixels = apply_modality_lut(pixels, dataset)
        if "WindowCenter" in dataset or "VOILUTSequence" in dataset:
            pixels = apply_voi_lut(pixels, dataset)
    except ImageDecodeError:
        raise
    except Exception as exc:
        message = " ".join(str(exc).split())  # pydicom's messages span several lines
        if "less than expected" in message:
            raise ImageDecodeError(
                TRUNCATED, f"the DICOM pixel data ends early ({message})"
            ) from None
        raise ImageDecodeError(
            UNDECODABLE, f"cannot decode the DICOM pixel data ({message})"
        ) from None
    photometric = str(getattr(dataset, "PhotometricInterpretation", "MONOCHROME2"))
    gray = to_grayscale_uint8(np.asarray(pixels))
    if photometric == "MONOCHROME1":  # 0 is white in MONOCHROME1
        gray = 255 - gray
    return DecodedImage(gray, cols, rows, f"DICOM/{photometric}", "DICOM")
