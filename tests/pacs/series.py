"""Real CT series for tests: the builder lives in `pacs.synthetic` (the benchmark uses it too);
here, the shared dataset's slices and a way to alter a file."""

from __future__ import annotations

import csv
from io import BytesIO
from pathlib import Path

from pydicom import dcmread

from pacs.synthetic import DEFAULT_WINDOW, ct_series, encode, grey_to_hounsfield, jpeg_grey
from tests.dataset import DATASET, dataset_missing

__all__ = [
    "DEFAULT_WINDOW",
    "ct_series",
    "dataset_slices",
    "encode",
    "grey_to_hounsfield",
    "jpeg_grey",
    "rewrite",
]


def rewrite(data: bytes, **changes: object) -> bytes:
    """A Part 10 file with some elements changed (keyword=value) or removed (keyword=None), kept in
    its transfer syntax; file meta elements (TransferSyntaxUID…) are changed in the file meta."""
    ds = dcmread(BytesIO(data))
    for keyword, value in changes.items():
        target = ds.file_meta if keyword.startswith(("TransferSyntax", "MediaStorage")) else ds
        if value is None:
            if keyword in target:
                delattr(target, keyword)
        else:
            setattr(target, keyword, value)
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def dataset_slices(n: int, folder: str = "malignant") -> list[Path]:
    """n consecutive 512×512 slices of one class of the shared dataset (distinct files, in the
    dataset's own numbering); skips the test, saying why, where the dataset is absent."""
    manifest = DATASET / "manifest.csv"
    if not manifest.exists():
        dataset_missing(f"the shared IQ-OTH/NCCD dataset is not at {DATASET}; this test needs real slices")
    with manifest.open(newline="") as handle:
        rows = [
            row
            for row in csv.DictReader(handle)
            if row["label"] == folder
            and row["width"] == "512"
            and row["height"] == "512"
            and not row["duplicate_of"]
        ]
    rows.sort(key=lambda row: int(row["sequence"]))
    paths = [DATASET / row["path"] for row in rows[:n]]
    if len(paths) < n or not all(path.exists() for path in paths):
        dataset_missing(f"the shared dataset at {DATASET} has fewer than {n} usable {folder} slices")
    return paths
