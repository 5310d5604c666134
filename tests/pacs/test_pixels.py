"""Hounsfield slices stored as 16-bit PNG come back exactly."""

from __future__ import annotations

from io import BytesIO

import numpy as np
import pytest
from PIL import Image

from pacs.pixels import HU_OFFSET, hounsfield_from_png, hounsfield_png


def test_int16_extremes_and_ct_values_round_trip_exactly():
    values = np.array([[-32768, -1024, -1000, -1], [0, 1, 3071, 32767]], dtype=np.int16)

    data = hounsfield_png(values)

    assert data.startswith(b"\x89PNG")
    with Image.open(BytesIO(data)) as image:
        assert image.mode == "I;16"
        assert np.asarray(image).tolist() == (values.astype(np.int32) + HU_OFFSET).tolist()
    back = hounsfield_from_png(data)
    assert back.dtype == np.int16
    assert np.array_equal(back, values)


def test_a_full_slice_round_trips_exactly():
    rng = np.random.default_rng(0)
    values = rng.integers(-32768, 32768, size=(512, 623), dtype=np.int16)  # not square: rows × columns kept

    assert np.array_equal(hounsfield_from_png(hounsfield_png(values)), values)


def test_only_2d_int16_arrays_are_stored():
    with pytest.raises(ValueError):
        hounsfield_png(np.zeros((4, 4), dtype=np.int32))
    with pytest.raises(ValueError):
        hounsfield_png(np.zeros((2, 4, 4), dtype=np.int16))


def test_an_8_bit_png_is_not_taken_for_hounsfield_units():
    buffer = BytesIO()
    Image.new("L", (4, 4), 7).save(buffer, format="PNG")

    with pytest.raises(ValueError):
        hounsfield_from_png(buffer.getvalue())
