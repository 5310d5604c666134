"""Bytes or pixels -> model input. Pillow and numpy only: the web process imports this.

One function, `preprocess`, is used by training and serving alike, so the network never sees
pixels prepared differently from the ones it was trained on.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

# The network's output columns, in order. Everything else reads probabilities by these names.
CLASS_NAMES: tuple[str, ...] = ("normal", "benign", "malignant")
IMAGE_SIZE = 256

# Formats a slice may come in, decided by content: Pillow's name -> (content type, extension).
ACCEPTED_FORMATS: dict[str, tuple[str, str]] = {"JPEG": ("image/jpeg", "jpg"), "PNG": ("image/png", "png")}
ACCEPTED_FORMATS_TEXT = " or ".join(ACCEPTED_FORMATS)
NOT_ACCEPTED_MESSAGE = f"not a {ACCEPTED_FORMATS_TEXT} image"

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError)
_BOMB_ERRORS = (Image.DecompressionBombError, Image.DecompressionBombWarning)


class ImageDecodeError(ValueError):
    """The upload cannot be used as a CT slice; the message says why, in words a clinician can act on."""


@dataclass(frozen=True)
class Inspection:
    """What `inspect` found: the format decided by content, the decoded 8-bit grayscale image, and
    how colourful the original was (0 for a grayscale file; CT slices are grayscale)."""

    format: str
    image: Image.Image
    colour: float = 0.0


def named_probabilities(row: Iterable[float]) -> dict[str, float]:
    """One row of the network's output as {class name: probability}."""
    return {name: float(value) for name, value in zip(CLASS_NAMES, row, strict=True)}


def most_probable(probabilities: Mapping[str, float]) -> str:
    """The label: the class with the highest probability (the first of equals, in CLASS_NAMES order)."""
    return max(CLASS_NAMES, key=lambda name: probabilities[name])


def sniff_format(data: bytes) -> str | None:
    """The image format decided by content (magic bytes), never by file name: "JPEG", "PNG",
    "DICOM" or None."""
    if data.startswith(_JPEG_MAGIC):
        return "JPEG"
    if data.startswith(_PNG_MAGIC):
        return "PNG"
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "DICOM"
    return None


def inspect(data: bytes, *, max_pixels: int | None = None) -> Inspection:
    """Decode JPEG or PNG bytes once: their format and a fully loaded 8-bit grayscale image.

    The type is decided by content. The pixel count is checked from the header before any pixel
    is decoded (decompression bombs), and the image is fully loaded so that truncation shows up
    here rather than later. Raises ImageDecodeError for anything it cannot use.
    """
    if not data:
        raise ImageDecodeError("the file is empty")
    kind = sniff_format(data)
    if kind == "DICOM":
        raise ImageDecodeError(
            f"DICOM files are not supported yet; upload the slice as {ACCEPTED_FORMATS_TEXT}"
        )
    if kind is None:
        raise ImageDecodeError(NOT_ACCEPTED_MESSAGE)

    header_size = _header_size(data, kind)
    if max_pixels is not None and header_size is not None:
        _check_pixels(header_size, max_pixels)
    with warnings.catch_warnings():
        # Pillow only warns between MAX_IMAGE_PIXELS and twice that; treat the warning as fatal.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image = _open(data, header_size, max_pixels)
        _load(image, max_pixels)
    fmt = (image.format or kind).upper()
    if fmt not in ACCEPTED_FORMATS:  # e.g. a multi-picture JPEG (MPO), which Pillow opens as JPEG
        raise ImageDecodeError(NOT_ACCEPTED_MESSAGE)
    try:
        oriented = ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block must not make a readable slice unusable
        oriented = image
    return Inspection(format=fmt, image=to_grayscale(oriented), colour=colourfulness(oriented))


def colourfulness(image: Image.Image) -> float:
    """Mean chroma (max - min of R, G and B) in [0, 1], on a thumbnail; 0 for grayscale modes."""
    if image.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return 0.0
    small = image.convert("RGB")
    small.thumbnail((128, 128))
    rgb = np.asarray(small, dtype=np.float32)
    return float((rgb.max(axis=2) - rgb.min(axis=2)).mean() / 255.0)


def decode_image(data: bytes, *, max_pixels: int | None = None) -> Image.Image:
    """The decoded 8-bit grayscale ("L") image of JPEG or PNG bytes; see `inspect`."""
    return inspect(data, max_pixels=max_pixels).image


def _open(data: bytes, header_size: tuple[int, int] | None, max_pixels: int | None) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data), formats=tuple(ACCEPTED_FORMATS))
    except _BOMB_ERRORS:
        raise ImageDecodeError(_too_many_pixels_message(header_size, max_pixels)) from None
    except _DECODE_ERRORS as exc:
        raise ImageDecodeError("the image is truncated or corrupt") from exc
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageDecodeError("the image has no pixels")
    if max_pixels is not None:
        _check_pixels((width, height), max_pixels)
    return image


def _load(image: Image.Image, max_pixels: int | None) -> None:
    try:
        image.load()
    except _BOMB_ERRORS:
        raise ImageDecodeError(_too_many_pixels_message(image.size, max_pixels)) from None
    except _DECODE_ERRORS as exc:
        raise ImageDecodeError("the image is truncated or corrupt") from exc


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ImageDecodeError(f"image is {width}×{height} pixels; the limit is {max_pixels:,}")


def _too_many_pixels_message(size: tuple[int, int] | None, max_pixels: int | None) -> str:
    limits = [limit for limit in (max_pixels, Image.MAX_IMAGE_PIXELS) if limit]
    limit = min(limits) if limits else 0
    if size is not None:
        return f"image is {size[0]}×{size[1]} pixels, too many pixels for a CT slice; the limit is {limit:,}"
    return f"the image has too many pixels for a CT slice; the limit is {limit:,}"


def _header_size(data: bytes, kind: str) -> tuple[int, int] | None:
    """(width, height) read from the header alone, or None where it cannot be found (Pillow then
    decides). Lets the pixel limit be enforced before Pillow's own, larger, bomb limit."""
    if kind == "PNG":
        if len(data) >= 24 and data[12:16] == b"IHDR":
            return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        return None
    # JPEG: walk the marker segments to the first start-of-frame.
    position = 2
    while position + 9 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            position += 2
            continue
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            height = int.from_bytes(data[position + 5 : position + 7], "big")
            width = int.from_bytes(data[position + 7 : position + 9], "big")
            return width, height
        if length < 2:
            return None
        position += 2 + length
    return None


def to_grayscale(image: Image.Image) -> Image.Image:
    """8-bit grayscale. 16-bit and float images are scaled linearly to their own range rather than
    clipped at 255; transparency is flattened onto black, the background of a CT slice."""
    if image.mode == "L":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        if high <= 255 and low >= 0:
            scaled = array
        else:
            scaled = (array - low) * (255.0 / (high - low)) if high > low else np.zeros_like(array)
        return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("L")


def pad_to_square(image: Image.Image, *, fill: int = 0) -> Image.Image:
    """Centre the image on a square canvas of its longer side. Padding, not stretching: in this
    dataset the aspect ratio alone gives the label away."""
    width, height = image.size
    side = max(width, height)
    if width == height:
        return image
    canvas = Image.new("L", (side, side), fill)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def preprocess_gray(image: Image.Image | bytes, *, size: int = IMAGE_SIZE) -> np.ndarray:
    """uint8 (size, size): grayscale, padded to square, resized. Training caches this form;
    `preprocess` turns it into the network's input."""
    if isinstance(image, bytes | bytearray | memoryview):
        image = decode_image(bytes(image))
    square = pad_to_square(to_grayscale(image))
    if square.size != (size, size):
        square = square.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(square, dtype=np.uint8)


def gray_to_input(gray: np.ndarray) -> np.ndarray:
    """uint8 (..., H, W) -> float32 (..., H, W, 3) in [0, 1]."""
    scaled = gray.astype(np.float32) / np.float32(255.0)
    return np.repeat(scaled[..., np.newaxis], 3, axis=-1)


def preprocess(image: Image.Image | bytes, *, size: int = IMAGE_SIZE) -> np.ndarray:
    """The network's input: float32 (size, size, 3) in [0, 1]."""
    return gray_to_input(preprocess_gray(image, size=size))
