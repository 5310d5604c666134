"""The labelled dataset: records from manifest.csv or class subfolders, duplicates, limits, and
the preprocessed pixels (cached on disk)."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ..preprocessing import CLASS_NAMES, IMAGE_SIZE, preprocess_gray

# Bump when preprocessing changes, so a stale cache is never reused.
PREPROCESSING_VERSION = "pad-square-bilinear-256-v1"
DATASET_CITATION = (
    "Alyasriy, H. & Al-Huseiny, M., The IQ-OTH/NCCD lung cancer dataset, "
    "Mendeley Data, doi:10.17632/bhmdr45bh2"
)
DATASET_DOI = "10.17632/bhmdr45bh2"

Printer = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Record:
    path: str  # relative to the dataset folder
    label: str
    sequence: int
    width: int
    height: int
    sha256: str
    duplicate_of: str


def _sequence_from_name(name: str, fallback: int) -> int:
    numbers = re.findall(r"\d+", Path(name).stem)
    return int(numbers[-1]) if numbers else fallback


def _records_from_manifest(manifest: Path) -> list[Record]:
    with manifest.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    records = [
        Record(
            path=row["path"],
            label=row["label"],
            sequence=int(row["sequence"]),
            width=int(row["width"]),
            height=int(row["height"]),
            sha256=row["sha256"],
            duplicate_of=row.get("duplicate_of", "") or "",
        )
        for row in rows
        if row["label"] in CLASS_NAMES
    ]
    if not records:
        raise ValueError(f"{manifest} lists no image of the classes {', '.join(CLASS_NAMES)}")
    return records


def _records_from_folders(data_dir: Path) -> list[Record]:
    records = []
    seen: dict[str, str] = {}
    for label in CLASS_NAMES:
        folder = data_dir / label
        if not folder.is_dir():
            continue
        files = sorted(
            (p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"}),
            key=lambda p: (_sequence_from_name(p.name, 0), p.name),
        )
        for index, file in enumerate(files, start=1):
            data = file.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
            relative = f"{label}/{file.name}"
            records.append(
                Record(
                    path=relative,
                    label=label,
                    sequence=_sequence_from_name(file.name, index),
                    width=width,
                    height=height,
                    sha256=digest,
                    duplicate_of=seen.get(digest, ""),
                )
            )
            seen.setdefault(digest, relative)
    if not records:
        raise ValueError(
            f"{data_dir} has neither manifest.csv nor class subfolders ({', '.join(CLASS_NAMES)})"
        )
    return records


def read_manifest(data_dir: Path) -> list[Record]:
    """Records from manifest.csv, or, where there is none, from the class subfolders (normal/,
    benign/, malignant/), with sequence taken from the number in the file name and duplicates
    found by content hash."""
    data_dir = Path(data_dir)
    manifest = data_dir / "manifest.csv"
    if manifest.exists():
        return _records_from_manifest(manifest)
    return _records_from_folders(data_dir)


def unique_records(records: Sequence[Record]) -> list[Record]:
    """Each byte-identical image once (the first occurrence)."""
    seen: set[str] = set()
    unique = []
    for record in records:
        if record.duplicate_of or record.sha256 in seen:
            continue
        seen.add(record.sha256)
        unique.append(record)
    return unique


def limit_records(records: Sequence[Record], limit: int | None) -> list[Record]:
    """At most `limit` images per class, the lowest sequence numbers (for tiny runs and tests)."""
    if not limit:
        return list(records)
    kept: list[Record] = []
    for label in CLASS_NAMES:
        of_class = sorted((r for r in records if r.label == label), key=lambda r: r.sequence)
        kept.extend(of_class[:limit])
    return kept


def load_images(
    data_dir: Path,
    records: Sequence[Record],
    *,
    cache_dir: Path | None = None,
    size: int = IMAGE_SIZE,
    echo: Printer = print,
) -> np.ndarray:
    """uint8 (N, size, size) as `preprocess_gray` makes them; cached as .npz keyed by the files'
    hashes, the size and the preprocessing version, so reruns skip decoding."""
    key = hashlib.sha256(
        (f"{PREPROCESSING_VERSION}@{size}\n" + "\n".join(r.sha256 for r in records)).encode()
    ).hexdigest()[:16]
    cache_file = Path(cache_dir) / f"images-{key}.npz" if cache_dir else None
    if cache_file and cache_file.exists():
        with np.load(cache_file) as cached:
            images = cached["images"]
        if images.shape == (len(records), size, size):
            echo(f"Loaded {len(records)} preprocessed images from cache {cache_file}")
            return images
    started = time.monotonic()
    images = np.empty((len(records), size, size), dtype=np.uint8)
    for index, record in enumerate(records):
        images[index] = preprocess_gray((Path(data_dir) / record.path).read_bytes(), size=size)
    echo(f"Decoded and preprocessed {len(records)} images in {time.monotonic() - started:.1f}s")
    if cache_file:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp.npz")
        np.savez(tmp, images=images)
        os.replace(tmp, cache_file)
    return images
