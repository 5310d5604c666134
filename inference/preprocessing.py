"""Bytes or pixels -> model input. Pillow and numpy only: the web process imports this.

One function, `preprocess`, is used by training and serving alike, so the network never sees
pixels prepared differently from the ones it was trained on.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from collections.abc import Iterable, Iterator, Mapping
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
    # The decoded pixels, upright, in the file's own mode: what a faithful copy must hold.
    decoded: Image.Image | None = None


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
    return Inspection(
        format=fmt, image=to_grayscale(oriented), colour=colourfulness(oriented), decoded=oriented
    )


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
    try:  # JPEG: the first start-of-frame segment
        for marker, segment, _ in _jpeg_segments(data):
            if marker in _SOF_MARKERS and len(segment) >= 5:
                return int.from_bytes(segment[3:5], "big"), int.from_bytes(segment[1:3], "big")
            if marker == 0xD9:
                break
    except ImageDecodeError:
        pass
    return None


# --- where an image really ends ------------------------------------------------------------------


def image_end(data: bytes, fmt: str) -> int:
    """Offset just past the image in JPEG or PNG `data`, found by walking the file's structure to its
    first IEND or EOI, never by searching for the last one. Raises ImageDecodeError where the
    structure is broken or the pixel data incomplete, which Pillow silently fills in."""
    return _png_end(data) if fmt == "PNG" else _jpeg_end(data)


def _corrupt(why: str) -> ImageDecodeError:
    return ImageDecodeError(f"the image is truncated or corrupt ({why}); export the slice again")


_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_INFLATE_STEP = 1024 * 1024


def _png_end(data: bytes) -> int:
    """Offset just past the first IEND chunk; every chunk's CRC checked on the way."""
    position, header, pixel_data = 8, b"", []
    while True:
        if position + 12 > len(data):
            raise _corrupt("the file ends before its IEND chunk")
        length = int.from_bytes(data[position : position + 4], "big")
        kind, end = data[position + 4 : position + 8], position + 12 + length
        if end > len(data):
            raise _corrupt("the file ends inside a chunk")
        body = data[position + 8 : end - 4]
        if zlib.crc32(kind + body) != int.from_bytes(data[end - 4 : end], "big"):
            raise _corrupt(f"the checksum of its {kind.decode('latin-1')!r} chunk does not match")
        if kind in (b"acTL", b"fcTL", b"fdAT"):
            raise ImageDecodeError("animated PNGs are not accepted; upload each slice as its own file")
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            pixel_data.append(body)
        elif kind == b"IEND":
            _png_check_pixels(header, pixel_data)
            return end
        position = end


def _png_check_pixels(header: bytes, pieces: list[bytes]) -> None:
    """The compressed pixel data holds exactly the rows the header promises: Pillow accepts a
    complete zlib stream that ends rows early and leaves the rest of the image blank."""
    if len(header) != 13 or header[9] not in _PNG_CHANNELS:
        raise _corrupt("its header is invalid")
    width, height, depth, colour, interlace = struct.unpack(">IIBB2xB", header)
    expected = 0
    for x0, y0, dx, dy in _ADAM7 if interlace else ((0, 0, 1, 1),):
        columns, rows = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        if columns > 0 and rows > 0:
            expected += rows * (1 + (columns * depth * _PNG_CHANNELS[colour] + 7) // 8)
    inflater, produced = zlib.decompressobj(), 0
    try:
        for piece in [*pieces, b""]:  # b"": output zlib may still hold back
            produced += _inflate(inflater, piece, expected - produced)
    except zlib.error:
        raise _corrupt("its pixel data cannot be decompressed") from None
    if produced < expected or not inflater.eof:
        raise _corrupt("its pixel data ends early")
    if produced > expected or inflater.unused_data:
        raise _corrupt("it holds more pixel data than the image")


def _inflate(inflater: zlib._Decompress, data: bytes, room: int) -> int:
    """Bytes inflated from `data`, stopping once past `room` (bounded memory, bombs included)."""
    produced = 0
    while True:
        out = inflater.decompress(data, _INFLATE_STEP)
        produced += len(out)
        data = inflater.unconsumed_tail
        if produced > room or (not data and len(out) < _INFLATE_STEP):
            return produced


_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_STANDALONE_MARKERS = frozenset({0x01, 0xD9, *range(0xD0, 0xD8)})  # TEM, EOI, RST0-7: no length


def _jpeg_segments(data: bytes) -> Iterator[tuple[int, bytes, int]]:
    """(marker, segment, offset after it) from after SOI until the data ends; segments are skipped
    by their lengths and a scan's entropy-coded data (in which FF00 and RSTn are data) by its end."""
    position = 2
    while position < len(data):
        if data[position] != 0xFF:
            raise _corrupt("a marker is missing where one must be")
        while position < len(data) - 1 and data[position + 1] == 0xFF:  # fill bytes
            position += 1
        marker, position = data[position + 1 : position + 2], position + 2
        if marker and marker[0] in _STANDALONE_MARKERS:
            yield marker[0], b"", position
            continue
        length = int.from_bytes(data[position : position + 2], "big")
        if marker in (b"", b"\x00", b"\xd8") or length < 2 or position + length > len(data):
            raise _corrupt("a segment is broken or cut short")
        segment, position = data[position + 2 : position + length], position + length
        if marker[0] == 0xDA:
            position = _jpeg_entropy_end(data, position)
        yield marker[0], segment, position


def _jpeg_end(data: bytes) -> int:
    """Offset just past the first EOI, where the scans seen cover every coefficient of every
    component: a progressive JPEG cut after one of its scans, EOI appended, decodes without a
    word from libjpeg."""
    components, lowest_bit = b"", dict[tuple[int, int], int]()
    for marker, segment, position in _jpeg_segments(data):
        if marker == 0xD9:
            if not components or any(lowest_bit.get((c, k)) != 0 for c in components for k in range(64)):
                raise _corrupt("some of its scans are missing")
            return position
        if marker in _SOF_MARKERS:
            if components:
                raise _corrupt("it holds more than one frame")
            components = segment[6 : 6 + 3 * segment[5] : 3] if len(segment) > 5 else b""
        elif marker == 0xDA:
            count = segment[0] if segment else 0
            if len(segment) != 4 + 2 * count:
                raise _corrupt("a scan header is broken")
            start, stop, low = (
                segment[-3],
                min(segment[-2], 63),
                segment[-1] & 0x0F,
            )  # low: successive approx.
            for component in segment[1 : 1 + 2 * count : 2]:
                for k in range(start, stop + 1):
                    lowest_bit[component, k] = min(lowest_bit.get((component, k), low), low)
    raise _corrupt("the file ends before its end-of-image marker")


def _jpeg_entropy_end(data: bytes, position: int) -> int:
    """Where a scan's entropy-coded data ends: the next marker that is neither FF00 nor RSTn."""
    while True:
        position = data.find(b"\xff", position)
        if position < 0 or position + 1 >= len(data):
            raise _corrupt("the file ends inside the image data")
        following = data[position + 1]
        if following == 0xFF:
            position += 1
        elif following == 0x00 or 0xD0 <= following <= 0xD7:
            position += 2
        else:
            return position


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
