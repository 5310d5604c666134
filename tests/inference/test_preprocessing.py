"""Preprocessing: decoding by content, pixel limits, padding (never stretching), value range."""

from __future__ import annotations

import io
import subprocess
import sys
import warnings

import numpy as np
import pytest
from PIL import Image

from inference.preprocessing import (
    CLASS_NAMES,
    IMAGE_SIZE,
    ImageDecodeError,
    decode_image,
    pad_to_square,
    preprocess,
    preprocess_gray,
    sniff_format,
)
from tests.conftest import dataset_slice


def encode(image: Image.Image, fmt: str = "PNG", **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def test_public_constants() -> None:
    assert CLASS_NAMES == ("normal", "benign", "malignant")
    assert IMAGE_SIZE == 256


def test_preprocessing_module_does_not_import_tensorflow() -> None:
    # The web process imports preprocessing (and predictor, for heatmap_png) on every request
    # path; TensorFlow must stay out of it.
    code = (
        "import sys, inference.preprocessing, inference.predictor; "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF imported'"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]),
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"\xff\xd8\xff\xe0rest", "JPEG"),
        (b"\x89PNG\r\n\x1a\nrest", "PNG"),
        (b"\0" * 128 + b"DICM" + b"\0" * 10, "DICOM"),
        (b"GIF89a....", None),
        (b"%PDF-1.7", None),
    ],
)
def test_format_is_decided_by_content(data: bytes, kind: str | None) -> None:
    assert sniff_format(data) == kind


def test_wide_image_is_padded_with_black_bands_not_stretched() -> None:
    # 512 wide, 256 high, all white: padding keeps a white band of half the height in the middle
    # and black above and below; stretching would make every pixel white.
    image = Image.new("L", (512, 256), 255)
    out = preprocess(image)
    assert out.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    assert out.dtype == np.float32
    column = out[:, 128, 0]
    assert column[:60].max() == 0.0, "top band should be padding"
    assert column[-60:].max() == 0.0, "bottom band should be padding"
    assert column[70:186].min() == 1.0, "the image itself is kept, centred"
    white_rows = np.flatnonzero(out[:, :, 0].mean(axis=1) > 0.5)
    assert 126 <= len(white_rows) <= 130  # half the height: aspect ratio preserved
    assert abs(white_rows.mean() - 127.5) < 1.5  # centred
    # Every column is the same: nothing was cropped horizontally.
    assert np.allclose(out[100, :, 0], 1.0)


def test_tall_image_is_padded_left_and_right() -> None:
    image = Image.new("L", (100, 400), 200)
    out = preprocess(image)[:, :, 0]
    assert out[:, :40].max() == 0 and out[:, -40:].max() == 0
    assert np.isclose(out[128, 128], 200 / 255, atol=1e-6)


def test_square_image_keeps_its_content_and_range() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(512, 512), dtype=np.uint8)
    out = preprocess(Image.fromarray(pixels, mode="L"))
    assert 0.0 <= out.min() and out.max() <= 1.0
    # The three channels are the same grayscale.
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
    # Downscaling by 2 averages neighbourhoods: the mean is preserved closely.
    assert abs(out.mean() - pixels.mean() / 255) < 0.01


def test_already_sized_slice_is_passed_through_exactly() -> None:
    pixels = np.arange(256 * 256, dtype=np.uint32).reshape(256, 256) % 256
    out = preprocess_gray(Image.fromarray(pixels.astype(np.uint8), mode="L"))
    assert np.array_equal(out, pixels.astype(np.uint8))


def test_rgb_and_grayscale_inputs_give_the_same_input() -> None:
    gray = Image.fromarray(np.tile(np.arange(0, 256, dtype=np.uint8), (64, 1)), mode="L")
    rgb = Image.merge("RGB", (gray, gray, gray))
    assert np.array_equal(preprocess(gray), preprocess(rgb))
    assert np.array_equal(preprocess(encode(gray, "PNG")), preprocess(encode(rgb, "PNG")))


def test_rgba_png_is_flattened_onto_black() -> None:
    rgba = Image.new("RGBA", (32, 32), (255, 255, 255, 0))  # fully transparent white
    decoded = decode_image(encode(rgba, "PNG"))
    assert decoded.mode == "L"
    assert np.asarray(decoded).max() == 0


def test_sixteen_bit_png_is_scaled_not_clipped() -> None:
    values = np.linspace(0, 4000, 64 * 64).reshape(64, 64).astype(np.uint16)
    image = Image.fromarray(values)  # mode I;16
    decoded = np.asarray(decode_image(encode(image, "PNG")))
    assert decoded.min() == 0 and decoded.max() == 255
    assert len(np.unique(decoded)) > 200  # a range, not a saturated white image


def test_decode_jpeg_and_png_returns_loaded_grayscale() -> None:
    rgb = Image.new("RGB", (40, 30), (10, 200, 30))
    for fmt in ("JPEG", "PNG"):
        image = decode_image(encode(rgb, fmt))
        assert image.mode == "L"
        assert image.size == (40, 30)


def test_bytes_input_is_decoded_like_an_image() -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (300, 200), dtype=np.uint8)
    image = Image.fromarray(pixels, mode="L")
    assert np.array_equal(preprocess(encode(image, "PNG")), preprocess(image))


def test_empty_file_is_rejected() -> None:
    with pytest.raises(ImageDecodeError, match="empty"):
        decode_image(b"")


@pytest.mark.parametrize(
    "data",
    [b"hello, this is text", b"GIF89a" + b"\0" * 100, encode(Image.new("RGB", (8, 8)), "BMP")],
)
def test_non_image_or_unsupported_format_is_rejected(data: bytes) -> None:
    with pytest.raises(ImageDecodeError, match="not a JPEG or PNG"):
        decode_image(data)


def test_dicom_is_rejected_with_a_clear_message_for_now() -> None:
    with pytest.raises(ImageDecodeError, match="DICOM"):
        decode_image(b"\0" * 128 + b"DICM" + b"\0" * 64)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_image_is_rejected(fmt: str) -> None:
    pixels = np.random.default_rng(2).integers(0, 256, (256, 256), dtype=np.uint8)
    data = encode(Image.fromarray(pixels, mode="L"), fmt)
    with pytest.raises(ImageDecodeError, match="truncated or corrupt"):
        decode_image(data[: len(data) // 2])


def test_corrupt_header_is_rejected() -> None:
    with pytest.raises(ImageDecodeError, match="truncated or corrupt"):
        decode_image(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge size, with (almost) no pixel data: a decompression bomb
    must be refused from the header, before any pixel is decoded."""
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload))
            + kind
            + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b""))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


def test_pixel_limit_is_checked_from_the_header() -> None:
    with pytest.raises(ImageDecodeError) as excinfo:
        decode_image(_png_header_only(20000, 20000), max_pixels=40_000_000)
    assert str(excinfo.value) == "image is 20000×20000 pixels; the limit is 40,000,000"


def test_decompression_bomb_beyond_pillow_limit_is_an_image_decode_error() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning may escape either
        with pytest.raises(ImageDecodeError, match="60000×60000 pixels, too many pixels"):
            decode_image(_png_header_only(60000, 60000))


def test_image_within_the_limit_is_accepted() -> None:
    data = encode(Image.new("L", (100, 100), 7), "PNG")
    assert decode_image(data, max_pixels=10_000).size == (100, 100)
    with pytest.raises(ImageDecodeError, match="100×100 pixels; the limit is 9,999"):
        decode_image(data, max_pixels=9_999)


def test_pad_to_square_centres_the_image() -> None:
    padded = pad_to_square(Image.new("L", (10, 4), 255))
    array = np.asarray(padded)
    assert padded.size == (10, 10)
    assert array[:3].max() == 0 and array[7:].max() == 0 and array[3:7].min() == 255


def test_real_wide_malignant_slice_is_padded(dataset_dir) -> None:
    # The dataset's 623×512 and 801×512 slices (all malignant) must not be stretched: their
    # aspect ratio would give the label away.
    from inference.training import read_manifest

    wide = next(r for r in read_manifest(dataset_dir) if r.width > 700)
    out = preprocess(dataset_slice(wide.path))[:, :, 0]
    band = round((1 - wide.height / wide.width) / 2 * IMAGE_SIZE)
    assert band > 40
    assert out[: band - 2].max() == 0 and out[-(band - 2) :].max() == 0
    assert out[band + 2 : -(band + 2)].max() > 0.5


def _jpeg_with_size(width: int, height: int) -> bytes:
    """A real small JPEG whose start-of-frame claims another size (a forged header)."""
    data = bytearray(encode(Image.new("L", (16, 16), 128), "JPEG"))
    index = data.find(b"\xff\xc0")
    data[index + 5 : index + 7] = height.to_bytes(2, "big")
    data[index + 7 : index + 9] = width.to_bytes(2, "big")
    return bytes(data)


def test_jpeg_pixel_limit_is_checked_from_the_header() -> None:
    with pytest.raises(ImageDecodeError, match="image is 30000×30000 pixels; the limit is 40,000,000"):
        decode_image(_jpeg_with_size(30000, 30000), max_pixels=40_000_000)


def test_real_slice_decodes_to_grayscale(dataset_dir) -> None:
    image = decode_image(dataset_slice("normal/Normal case (1).jpg"), max_pixels=40_000_000)
    assert image.mode == "L" and image.size == (512, 512)
