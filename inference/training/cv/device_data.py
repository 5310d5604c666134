"""The device data files `data_{size}.npz`: written locally (`prepare_device_data`, the `prep`
command) and read on the device (`load_device_data`). A smaller size's file may store only the
slices that cannot be derived exactly from the largest size's file; every slice carries a CRC-32.
"""

from __future__ import annotations

import dataclasses
import json
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...preprocessing import CLASS_NAMES, preprocess_gray
from ..data import Printer, Record
from .folds import DEFAULT_K, fold_summary, grouped_folds

DEFAULT_DEVICE_DIR = Path("var/device")
DEFAULT_DATA_DIR = Path("../shared/datasets/iqothnccd")

# numpy's stubs read `**arrays` as possibly holding `allow_pickle`; this takes named arrays only.
_savez_compressed: Callable[..., None] = np.savez_compressed


@dataclasses.dataclass
class DeviceData:
    """The slices one device run trains on, as `load_device_data` returns them."""

    gray: np.ndarray  # uint8 (N, size, size), as preprocess_gray(size=size) makes them
    labels: np.ndarray  # int64 (N,), indices into CLASS_NAMES
    fold_of: np.ndarray  # int64 (N,)
    paths: np.ndarray  # str (N,), relative to the dataset folder
    sequences: np.ndarray  # int64 (N,)
    image_size: int
    description: dict[str, Any]
    derived: int = 0  # images computed from a larger size's file
    crc_mismatches: int = 0  # derived images that differ from the ones prepared locally


def _crc32(images: np.ndarray) -> np.ndarray:
    return np.array([zlib.crc32(np.ascontiguousarray(image).tobytes()) for image in images], dtype=np.uint32)


def _derive(larger: np.ndarray, size: int) -> np.ndarray:
    """A `size` slice from a larger, already square one, exactly as preprocess_gray resizes."""
    from PIL import Image

    return preprocess_gray(Image.fromarray(larger), size=size)


def _metadata_arrays(
    records: Sequence[Record], folds: np.ndarray, size: int, description: dict[str, Any]
) -> dict[str, np.ndarray]:
    return {
        "image_size": np.array(size),
        "labels": np.array([CLASS_NAMES.index(r.label) for r in records], dtype=np.int64),
        "sequences": np.array([r.sequence for r in records], dtype=np.int64),
        "paths": np.array([r.path for r in records], dtype=str),
        "fold_of": folds.astype(np.int64),
        "class_names": np.array(CLASS_NAMES, dtype=str),
        "description": np.array(json.dumps(description)),
    }


def prepare_device_data(
    data_dir: Path,
    out_dir: Path = DEFAULT_DEVICE_DIR,
    *,
    sizes: Sequence[int] = (384, 512),
    k: int = DEFAULT_K,
    limit: int | None = None,
    cache_dir: Path | None = None,
    derive: bool = True,
    echo: Printer = print,
) -> list[Path]:
    """Write `data_{size}.npz` (np.savez_compressed) for each size: uint8 slices padded to square
    and resized with `preprocess_gray(size=...)`, labels, sequences, paths and the folds.

    The folds are computed once, from the 256 px slices (`load_images`, cached), so every size
    shares them. With `derive`, a smaller size's file stores only the slices that cannot be
    computed exactly from the largest size's file (those whose original is not that size
    already: it saves ~26 MB of the 64 MiB a device call may carry); `load_device_data` rebuilds
    the rest and checks each slice's CRC-32."""
    from ..data import limit_records, load_images, read_manifest, unique_records

    data_dir, out_dir = Path(data_dir), Path(out_dir)
    records = limit_records(unique_records(read_manifest(data_dir)), limit)
    base = load_images(data_dir, records, cache_dir=cache_dir, echo=echo)
    folds = grouped_folds(records, base, k)
    description = {
        "dataset_records": len(records),
        "folds": fold_summary(records, folds, base),
        "preprocessing": "grayscale, padded to square (black), bilinear resize (preprocess_gray)",
    }
    order = sorted(set(sizes), reverse=True)
    written: list[Path] = []
    largest: tuple[int, np.ndarray, str] | None = None
    for size in order:
        started = time.monotonic()
        images = np.stack([preprocess_gray((data_dir / r.path).read_bytes(), size=size) for r in records])
        arrays = _metadata_arrays(records, folds, size, description)
        arrays["crc32"] = _crc32(images)
        if derive and largest is not None:
            source_size, source_images, source_name = largest
            derived = np.array(
                [(_derive(s, size) == i).all() for s, i in zip(source_images, images, strict=True)]
            )
            arrays.update(
                images=images[~derived],
                stored_index=np.flatnonzero(~derived).astype(np.int64),
                derived_from=np.array(source_name),
                derived_size=np.array(source_size),
            )
        else:
            arrays["images"] = images
        path = out_dir / f"data_{size}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        _savez_compressed(path, **arrays)
        stored = len(arrays["images"])
        echo(
            f"{path}: {len(records)} slices at {size} px ({stored} stored, {len(records) - stored} derived "
            f"from the larger file), {path.stat().st_size / 1e6:.1f} MB in {time.monotonic() - started:.0f}s"
        )
        written.append(path)
        if largest is None:
            largest = (size, images, path.name)
    return written


def load_device_data(path: Path, *, echo: Printer = print) -> DeviceData:
    """Read a `data_{size}.npz` written by `prepare_device_data` (rebuilding derived slices from
    the larger file beside it). Raises ValueError where a stored slice fails its CRC-32; a derived
    slice that differs (another Pillow version) is counted and reported, not fatal."""
    path = Path(path)
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files}
    size = int(arrays["image_size"])
    n = len(arrays["labels"])
    gray = np.empty((n, size, size), dtype=np.uint8)
    stored = arrays.get("stored_index", np.arange(n))
    gray[stored] = arrays["images"]
    derived = np.setdiff1d(np.arange(n), stored)
    if len(derived):
        source = load_device_data(path.parent / str(arrays["derived_from"]), echo=echo)
        if not np.array_equal(source.paths, arrays["paths"]):
            raise ValueError(f"{path} and {arrays['derived_from']} list different slices")
        for i in derived:
            gray[i] = _derive(source.gray[i], size)
    bad = np.flatnonzero(_crc32(gray) != arrays["crc32"])
    if np.isin(bad, stored).any():
        raise ValueError(f"{path}: {int(np.isin(bad, stored).sum())} stored slices fail their CRC-32")
    if len(bad):
        echo(f"WARNING {path}: {len(bad)} of {len(derived)} derived slices differ from the prepared ones")
    return DeviceData(
        gray=gray,
        labels=arrays["labels"].astype(np.int64),
        fold_of=arrays["fold_of"].astype(np.int64),
        paths=arrays["paths"],
        sequences=arrays["sequences"].astype(np.int64),
        image_size=size,
        description=json.loads(str(arrays["description"])),
        derived=len(derived),
        crc_mismatches=len(bad),
    )
