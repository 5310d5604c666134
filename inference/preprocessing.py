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

    with warnings.catch_warnings():
        # Pillow only warns between MAX_IMAGE_PIXELS and twice that; treat the warning as fatal.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=_ACCEPTED_FORMATS)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageDecodeError(_too_many_pixels_message(exc, max_pixels)) from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageDecodeError("the image is truncated or corrupt") from exc

        width, height = image.size
        if width < 1 or height < 1:
            raise ImageDecodeError("the image has no pixels")
        if max_pixels is not None and width * height > max_pixels:
            raise ImageDecodeError(
                f"image is {width}×{height} pixels; the limit is {max_pixels:,}"
            )
        try:
            image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageDecodeError(_too_many_pixels_message(exc, max_pixels)) from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageDecodeError("the image is truncated or corrupt") from exc

    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block must not make a readable slice unusable
        pass
    return to_grayscale(image)


def _too_many_pixels_message(exc: BaseException, max_pixels: int | None) -> str:
    limit = max_pixels if max_pixels is not None else Image.MAX_IMAGE_PIXELS
    return f"the image has too many pixels to be a CT slice; the limit is {limit:,}"


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
