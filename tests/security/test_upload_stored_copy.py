"""Issue 11, uploads: what is stored and served is a lossless PNG of the decoded pixels, not the
uploaded bytes, and it is classified exactly as the upload would have been."""

import hashlib
import io
import struct

import numpy as np
import pytest
from django.core.files.storage import default_storage
from PIL import Image

from cases import services
from cases.services import prediction_runs
from inference.preprocessing import inspect, preprocess
from tests import hostile
from tests.conftest import dataset_slice, upload

DATASET_SLICES = [
    "benign/Bengin case (1).jpg",
    "malignant/Malignant case (1).jpg",
    "malignant/Malignant case (2).jpg",
    "normal/Normal case (1).jpg",
]


def png_chunk_types(data: bytes) -> list[bytes]:
    kinds, position = [], 8
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kinds.append(data[position + 4 : position + 8])
        position += 12 + length
    return kinds


def stored_copy(data: bytes) -> bytes:
    checked = services.slice_check(io.BytesIO(data), name="slice")
    checked.content.seek(0)
    return checked.content.read()


class FakePredictor:
    """What the worker's input step asks of a predictor: every slice assessable."""

    image_size = 256

    def not_assessable_reason(self, found):
        return None


@pytest.mark.parametrize("path", DATASET_SLICES)
def test_the_stored_copy_gives_the_network_exactly_the_input_the_upload_would_have(
    patient, alice, django_capture_on_commit_callbacks, path
):
    original = dataset_slice(path)
    with django_capture_on_commit_callbacks(execute=False):
        scan = services.scan_upload(
            patient=patient, files=[upload("slice.jpg", original, "image/jpeg")], uploaded_by=alice
        )
    item = scan.slices.get()
    with default_storage.open(item.image.name, "rb") as handle:
        stored = handle.read()
    assert stored.startswith(b"\x89PNG") and item.image.name.endswith(".png")
    expected = preprocess(inspect(original).image)
    assert np.array_equal(preprocess(inspect(stored).image), expected)
    # ...and through the worker's own path, which checks the stored file's SHA-256 first.
    reasons, inputs = prediction_runs._inputs([item], FakePredictor())
    assert reasons == {} and np.array_equal(inputs[0], expected)


def test_the_slice_records_both_hashes_and_the_upload_s_size(
    patient, alice, django_capture_on_commit_callbacks
):
    original = dataset_slice(DATASET_SLICES[0])
    with django_capture_on_commit_callbacks(execute=False):
        scan = services.scan_upload(
            patient=patient, files=[upload("../a/slice.jpg", original, "image/jpeg")], uploaded_by=alice
        )
    item = scan.slices.get()
    with default_storage.open(item.image.name, "rb") as handle:
        stored = handle.read()
    assert item.sha256 == hashlib.sha256(stored).hexdigest()
    assert item.source_sha256 == hashlib.sha256(original).hexdigest()
    assert item.size_bytes == len(original) and item.original_name == "slice.jpg"
    assert item.content_type == "image/png" and (item.width, item.height) == (512, 512)


def _encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    return _encoded(hostile.ct_like().crop((0, 0, 256, 160)).convert("RGB"), "JPEG", exif=exif)


def _sixteen_bit_png() -> bytes:
    values = (np.arange(128 * 96, dtype=np.uint16).reshape(96, 128) * 5).astype(np.uint16)
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    return _encoded(image, "PNG")


def _palette_png_with_transparency() -> bytes:
    image = Image.merge("RGB", [hostile.ct_like(128)] * 2 + [hostile.ct_like(128).rotate(45)]).quantize(32)
    return _encoded(image, "PNG", transparency=0)


def _colour() -> Image.Image:
    return Image.merge("RGB", [hostile.ct_like(128), hostile.ct_like(128).rotate(90), hostile.ct_like(128)])


VARIANTS = {
    "gray.jpg": lambda: hostile.jpeg_bytes(hostile.ct_like()),
    "colour.jpg": lambda: hostile.jpeg_bytes(_colour()),
    "rotated.jpg": _rotated_jpeg,
    "cmyk.jpg": lambda: _encoded(_colour().convert("CMYK"), "JPEG"),
    "sixteen-bit.png": _sixteen_bit_png,
    "palette.png": _palette_png_with_transparency,
    "gray-alpha.png": lambda: _encoded(hostile.ct_like(128).convert("LA"), "PNG"),
    "rgba.png": lambda: _encoded(_colour().convert("RGBA"), "PNG"),
    "bilevel.png": lambda: _encoded(hostile.ct_like(128).convert("1"), "PNG"),
}


@pytest.mark.parametrize("name", VARIANTS)
def test_every_kind_of_image_is_stored_as_exactly_what_it_decoded_to(name):
    original = VARIANTS[name]()
    stored = stored_copy(original)
    before, after = inspect(original), inspect(stored)
    assert after.image.size == before.image.size
    assert after.image.tobytes() == before.image.tobytes()
    assert after.colour == before.colour  # how colourful a slice is decides whether it is assessable
    kinds = png_chunk_types(stored)
    assert kinds[0] == b"IHDR" and set(kinds[1:-1]) == {b"IDAT"} and kinds[-1] == b"IEND"
