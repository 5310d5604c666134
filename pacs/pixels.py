"""Hounsfield slices stored losslessly as 16-bit greyscale PNG, so the viewer can window them later."""

from __future__ import annotations

from io import BytesIO

import numpy as np
from PIL import Image

# PNG greys are unsigned: HU + 32768 maps int16's whole range onto uint16 and back exactly.
HU_OFFSET = 32768


def hounsfield_png(hounsfield: np.ndarray) -> bytes:
    """A lossless 16-bit grey PNG (Pillow "I;16") of hounsfield + HU_OFFSET."""
    values = np.asarray(hounsfield)
    if values.ndim != 2 or values.dtype != np.int16:
        raise ValueError(f"expected a 2-D int16 array, not {values.dtype} {values.shape}")
    shifted = values.view(np.uint16) ^ HU_OFFSET  # = HU + 32768 for every int16, without an int32 copy
    buffer = BytesIO()
    Image.fromarray(shifted).save(buffer, format="PNG")  # uint16 -> mode "I;16"
    return buffer.getvalue()


def hounsfield_from_png(data: bytes) -> np.ndarray:
    """The int16 Hounsfield array a `hounsfield_png` holds, exactly."""
    with Image.open(BytesIO(data)) as image:
        if image.format != "PNG" or image.mode not in ("I;16", "I;16B", "I;16L", "I"):
            raise ValueError(f"not a 16-bit grey PNG ({image.format} {image.mode})")
        values = np.asarray(image).astype(np.int32)
    if values.min(initial=0) < 0 or values.max(initial=0) > 0xFFFF:
        raise ValueError("not a 16-bit grey PNG: values outside 0..65535")
    return (values - HU_OFFSET).astype(np.int16)
