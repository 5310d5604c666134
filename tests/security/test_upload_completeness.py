"""Issue 11, uploads: a file is used only if it decodes completely and ends where its image ends.
Each test is an attack that used to be stored and classified, or a well-formed file the structure
walk must not refuse."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from cases.services import slice_check
from inference.preprocessing import ImageDecodeError, inspect
from tests import hostile
from tests.conftest import dataset_slice


def check(data: bytes, name: str = "slice") -> bytes:
    """The stored copy of an accepted file."""
    checked = slice_check(io.BytesIO(data), name=name)
    checked.content.seek(0)
    return checked.content.read()


def refusal(data: bytes) -> str:
    with pytest.raises(ImageDecodeError) as caught:
        slice_check(io.BytesIO(data), name="attack")
    return str(caught.value)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


# --- pixel data that ends early ------------------------------------------------------------------


def test_half_a_real_jpeg_followed_by_ffd9_is_refused():
    original = dataset_slice("malignant/Malignant case (1).jpg")
    attack = hostile.truncated_jpeg_with_eoi(original, keep=0.6)
    # The attack as reported: Pillow decodes it without complaint and paints the lost rows grey.
    with Image.open(io.BytesIO(attack)) as image:
        pixels = np.asarray(image.convert("L"))
    flat_rows = sum(1 for row in pixels if row.min() == row.max())
    assert flat_rows > 100
    assert "truncated or corrupt" in refusal(attack)
    assert "premature end" in refusal(attack).lower()


@pytest.mark.parametrize("keep", [0.3, 0.5, 0.7, 0.9, 0.99])
def test_a_jpeg_cut_anywhere_in_its_image_data_is_refused(keep):
    assert "truncated or corrupt" in refusal(hostile.truncated_jpeg_with_eoi(keep=keep))


def test_a_progressive_jpeg_missing_its_last_scans_is_refused():
    attack = hostile.progressive_jpeg_cut_after_a_scan()
    Image.open(io.BytesIO(attack)).load()  # libjpeg decodes what is there without a warning
    assert "scans are missing" in refusal(attack)


def test_a_png_whose_pixel_data_stops_rows_early_is_refused():
    attack = hostile.png_with_short_pixel_data()
    Image.open(io.BytesIO(attack)).load()  # Pillow leaves the missing rows blank
    assert "ends early" in refusal(attack)


def test_a_png_with_more_pixel_data_than_its_header_promises_is_refused():
    rows = b"".join(b"\x00" + bytes(range(64)) for _ in range(64))
    header = struct.pack(">IIBBBBB", 64, 64, 8, 0, 0, 0, 0)
    attack = (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(rows + b"<html>hidden</html>" * 50))
        + png_chunk(b"IEND", b"")
    )
    Image.open(io.BytesIO(attack)).load()
    assert "more pixel data" in refusal(attack)


def test_pillow_is_not_told_to_accept_truncated_images():
    # Every app is imported by now; none may have switched Pillow's guard off for everyone.
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize(
    "attack",
    [hostile.png_with_cut_pixel_data(), hostile.jpeg_bytes(hostile.ct_like())[:-3000]],
    ids=["png", "jpeg"],
)
def test_truncated_files_are_refused_even_if_pillow_accepted_them(monkeypatch, attack):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    assert "truncated or corrupt" in refusal(attack)


# --- bytes after the image -------------------------------------------------------------------------


def test_html_between_the_image_and_a_final_ffd9_is_refused():
    assert "extra data after the image" in refusal(hostile.jpeg_html_before_final_eoi())


def test_html_before_a_fake_trailing_iend_is_refused():
    assert "extra data after the image" in refusal(hostile.png_html_before_fake_iend())


def test_a_png_with_a_broken_chunk_checksum_is_refused():
    assert "checksum" in refusal(hostile.png_with_bad_crc())


def test_an_animated_png_is_refused():
    assert "animated" in refusal(hostile.animated_png())


def test_nul_padding_after_the_image_is_accepted_but_not_stored():
    data = hostile.jpeg_bytes(hostile.ct_like())
    stored = check(data + b"\x00" * 512)
    assert stored == check(data)


# --- well-formed files the walk must follow, not refuse ------------------------------------------


def test_an_eoi_inside_a_segment_is_not_the_end_of_the_image():
    inner = hostile.jpeg_bytes(hostile.ct_like(64))  # a whole JPEG (SOI ... EOI) in a comment
    data = hostile.jpeg_bytes(hostile.ct_like())
    with_comment = data[:2] + b"\xff\xfe" + struct.pack(">H", len(inner) + 2) + inner + data[2:]
    assert check(with_comment) == check(data)


@pytest.mark.parametrize(
    "options",
    [{"progressive": True}, {"restart_marker_rows": 1}, {"subsampling": 0}, {"optimize": True}],
    ids=["progressive", "restart-markers", "4:4:4", "optimized"],
)
def test_well_formed_jpeg_variants_are_accepted(options):
    image = Image.merge("RGB", [hostile.ct_like(), hostile.ct_like().rotate(90), hostile.ct_like()])
    assert check(hostile.jpeg_bytes(image, **options)).startswith(b"\x89PNG")


def adam7_png(image: Image.Image) -> bytes:
    """An interlaced 8-bit grayscale PNG, built by hand (Pillow writes none)."""
    pixels = np.asarray(image)
    passes = (
        (0, 0, 8, 8),
        (4, 0, 8, 8),
        (0, 4, 4, 8),
        (2, 0, 4, 4),
        (0, 2, 2, 4),
        (1, 0, 2, 2),
        (0, 1, 1, 2),
    )
    raw = b"".join(
        b"\x00" + row.tobytes() for x0, y0, dx, dy in passes for row in pixels[y0::dy, x0::dx] if row.size
    )
    header = struct.pack(">IIBBBBB", image.width, image.height, 8, 0, 0, 0, 1)
    compressed = zlib.compress(raw)
    idats = png_chunk(b"IDAT", compressed[:100]) + png_chunk(b"IDAT", compressed[100:])  # two chunks
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + idats + png_chunk(b"IEND", b"")


@pytest.mark.parametrize("size", [(64, 64), (67, 101), (130, 65)])
def test_an_interlaced_png_in_several_chunks_is_accepted_with_its_pixels(size):
    image = hostile.ct_like(160).crop((0, 0, *size))
    stored = check(adam7_png(image))
    assert inspect(stored).image.tobytes() == image.tobytes()


# --- size --------------------------------------------------------------------------------------------


def test_a_one_pixel_png_is_refused():
    assert "too small" in refusal(hostile.jpeg_bytes(Image.new("L", (1, 1))))
    assert "at least 64" in refusal(hostile._png((1, 1)))


def test_the_smallest_side_is_a_setting(settings):
    settings.UPLOAD_MIN_SIDE = 128
    assert "at least 128" in refusal(hostile._png((100, 300)))
    check(hostile._png((128, 300)))
