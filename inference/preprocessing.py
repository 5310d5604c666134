"""Bytes or pixels -> model input. Pillow and numpy only: the web process imports this.

One function, `preprocess`, is used by training and serving alike, so the network never sees
pixels prepared differently from the ones it was trained on.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps

CLASS_NAMES: tuple[str, ...] = ("normal", "benign", "malignant")
IMAGE_SIZE = 256

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_ACCEPTED_FORMATS = ("JPEG", "PNG")


class ImageDecodeError(ValueError):
    """The upload cannot be used as a CT slice; the message says why, in words a clinician can act on."""


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


def decode_image(data: bytes, *, max_pixels: int | None = None) -> Image.Image:
    """Decode JPEG or PNG bytes into a fully loaded 8-bit grayscale ("L") image.

    The type is decided by content. The pixel count is checked from the header before any pixel
    is decoded (decompression bombs), and the image is fully loaded so that truncation shows up
    here rather than later. Raises ImageDecodeError for anything it cannot use.
    """
    if not data:
        raise ImageDecodeError("the file is empty")
    kind = sniff_format(data)
    if kind == "DICOM":
        raise ImageDecodeError("DICOM files are not supported yet; upload the slice as JPEG or PNG")
    if kind is None:
        raise ImageDecodeError("not a JPEG or PNG image")

    header_size = _header_size(data, kind)
    if max_pixels is not None and header_size is not None:
        _check_pixels(header_size, max_pixels)

    with warnings.catch_warnings():
        # Pillow only warns between MAX_IMAGE_PIXELS and twice that; treat the warning as fatal.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=_ACCEPTED_FORMATS)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageDecodeError(_too_many_pixels_message(header_size, max_pixels)) from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageDecodeError("the image is truncated or corrupt") from exc

        width, height = image.size
        if width < 1 or height < 1:
            raise ImageDecodeError("the image has no pixels")
        if max_pixels is not None:
            _check_pixels((width, height), max_pixels)
        try:
            image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageDecodeError(_too_many_pixels_message((width, height), max_pixels)) from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageDecodeError("the image is truncated or corrupt") from exc

    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block must not make a readable slice unusable
        pass
    return to_grayscale(image)


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ImageDecodeError(f"image is {width}×{height} pixels; the limit is {max_pixels:,}")


def _too_many_pixels_message(size: tuple[int, int] | None, max_pixels: int | None) -> str:
    limit = min(max_pixels or Image.MAX_IMAGE_PIXELS, Image.MAX_IMAGE_PIXELS or max_pixels or 0)
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


def preprocess_gray(image: Image.Image | bytes) -> np.ndarray:
    """uint8 (IMAGE_SIZE, IMAGE_SIZE): grayscale, padded to square, resized. Training caches
    this form; `preprocess` turns it into the network's input."""
    if isinstance(image, bytes | bytearray | memoryview):
        image = decode_image(bytes(image))
    square = pad_to_square(to_grayscale(image))
    if square.size != (IMAGE_SIZE, IMAGE_SIZE):
        square = square.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(square, dtype=np.uint8)


def gray_to_input(gray: np.ndarray) -> np.ndarray:
    """uint8 (..., H, W) -> float32 (..., H, W, 3) in [0, 1]."""
    scaled = gray.astype(np.float32) / np.float32(255.0)
    return np.repeat(scaled[..., np.newaxis], 3, axis=-1)


def preprocess(image: Image.Image | bytes) -> np.ndarray:
    """The network's input: float32 (256, 256, 3) in [0, 1]."""
    return gray_to_input(preprocess_gray(image))
