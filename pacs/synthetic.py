"""Proper CT Image Storage Part 10 files built with pydicom from 8-bit slices (e.g. the shared
dataset's JPEGs) or Hounsfield arrays, uncompressed or compressed, in order or shuffled: for the
tests, the benchmark (`manage.py dicom_upload_cost`) and trying the DICOM paths without a scanner.

How an 8-bit slice becomes Hounsfield units: each grey g (0..255) is given the HU value x that
DICOM's linear VOI LUT (PS3.3 C.11.2.1.2.1) maps back to g under the series' window (c, w):

    x = round(c - 0.5 + (g / 255 - 0.5) × (w - 1))

so that `windowed(hounsfield, c, w)` returns g again. One grey step spans (w - 1) / 255 HU (1.56 HU
for w = 400), so rounding x moves the windowed value by at most 0.5 × 255 / (w - 1) < 0.5 of a
grey step whenever w > 256: the JPEG's grey array comes back exactly (±1 for narrower windows or a
RescaleSlope other than 1). The stored value is (x - RescaleIntercept) / RescaleSlope, rounded.
Where `window` is None the files carry no WindowCenter/Width and the mapping uses DEFAULT_WINDOW,
the portal's default (DICOM_DEFAULT_WINDOW_CENTER/WIDTH).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
    generate_uid,
)

DEFAULT_WINDOW = (40.0, 400.0)
UNCOMPRESSED = {ExplicitVRLittleEndian, ImplicitVRLittleEndian}


def grey_to_hounsfield(grey: np.ndarray, center: float, width: float) -> np.ndarray:
    """int16 HU values that `pacs.reading.windowed(…, center, width)` turns back into `grey`."""
    values = center - 0.5 + (grey.astype(np.float64) / 255.0 - 0.5) * (width - 1)
    return np.clip(np.rint(values), -32768, 32767).astype(np.int16)


def jpeg_grey(path: Path) -> np.ndarray:
    """A dataset slice's 8-bit grey pixels, as the JPEG decodes."""
    with Image.open(path) as image:
        return np.asarray(image.convert("L"), dtype=np.uint8)


def ct_series(
    images: Sequence[np.ndarray | Path],
    *,
    series_uid: str | None = None,
    study_uid: str | None = None,
    patient_id: str = "P-1",
    patient_name: str = "Roe^Jane",
    birth_date: str = "19610314",
    sex: str = "F",
    accession: str = "ACC1",
    study_date: str = "20261120",
    slice_thickness: float = 1.25,
    spacing: float = 1.25,
    window: tuple[float, float] | None = (40.0, 400.0),
    slope: float = 1.0,
    intercept: float = -1024.0,
    transfer_syntax: str = ExplicitVRLittleEndian,
    shuffle: bool = False,
    modality: str = "CT",
    seed: int = 0,
    series_number: int = 2,
    series_description: str = "CHEST 1.25 LUNG",
    first_instance: int = 1,
) -> list[tuple[str, bytes]]:
    """One CT series as [(file name, Part 10 bytes)], instance i at z = -100 + i × spacing mm.

    Images: a Path (a dataset JPEG, read as 8-bit grey) or a uint8 array map through `window` as
    the module docstring says; an int16 array is taken as Hounsfield units as it is. Compressed
    syntaxes use pydicom's `Dataset.compress` (RLE Lossless, JPEG 2000 Lossless, JPEG-LS Lossless
    where an encoder is installed). Names are IM0001.dcm… by InstanceNumber; `shuffle` only changes
    the order of the list."""
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    frame_of_reference = generate_uid()
    center, width = window or DEFAULT_WINDOW
    files = []
    for index, image in enumerate(images):
        hounsfield = _hounsfield(image, center, width)
        stored = np.clip(np.rint((hounsfield.astype(np.float64) - intercept) / slope), -32768, 32767)
        number = first_instance + index
        ds = _dataset(
            stored.astype(np.int16),
            number=number,
            z=-100.0 + index * spacing,
            study_uid=study_uid,
            series_uid=series_uid,
            frame_of_reference=frame_of_reference,
            header={
                "PatientID": patient_id,
                "PatientName": patient_name,
                "PatientBirthDate": birth_date,
                "PatientSex": sex,
                "AccessionNumber": accession,
                "StudyDate": study_date,
                "SeriesDate": study_date,
                "Modality": modality,
                "SeriesNumber": series_number,
                "SeriesDescription": series_description,
                "SliceThickness": slice_thickness,
                "RescaleSlope": slope,
                "RescaleIntercept": intercept,
            },
            window=window,
        )
        files.append((f"IM{number:04d}.dcm", encode(ds, transfer_syntax)))
    if shuffle:
        random.Random(seed).shuffle(files)
    return files


def rle_bomb(side: int, **header: Any) -> bytes:
    """A hostile CT instance: side×side zeros in RLE Lossless, about side²/64 bytes that decode to
    2·side² (8192: 2 MB on the wire, 128 MiB decoded), built without ever holding the pixels.
    `side` a multiple of 128; `header` as ct_series takes it."""
    [(_, small)] = ct_series([np.zeros((64, 64), dtype=np.uint8)], **header)
    ds = dcmread(BytesIO(small))
    segment = b"\x81\x00" * (side * side // 128)  # PackBits: 128 zeros per two bytes, within each row
    offsets = struct.pack("<16I", 2, 64, 64 + len(segment), *[0] * 13)  # two segments: high, low bytes
    ds.Rows = ds.Columns = side
    ds.PixelData = encapsulate([offsets + segment + segment])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = RLELossless
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def encode(ds: Dataset, transfer_syntax: str = ExplicitVRLittleEndian) -> bytes:
    """The dataset as Part 10 bytes (preamble, "DICM", file meta) in the given transfer syntax."""
    ds = ds.copy()  # compress() rewrites PixelData in place
    ds.file_meta = FileMetaDataset(ds.file_meta)
    syntax = UID(transfer_syntax)
    if syntax in UNCOMPRESSED:
        ds.file_meta.TransferSyntaxUID = syntax
    else:
        ds.compress(syntax)
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _hounsfield(image: np.ndarray | Path, center: float, width: float) -> np.ndarray:
    if isinstance(image, Path):
        return grey_to_hounsfield(jpeg_grey(image), center, width)
    if image.dtype == np.uint8:
        return grey_to_hounsfield(image, center, width)
    if image.dtype == np.int16:
        return image
    raise TypeError(f"images are Paths, uint8 greys or int16 HU arrays, not {image.dtype}")


def _dataset(
    stored: np.ndarray,
    *,
    number: int,
    z: float,
    study_uid: str,
    series_uid: str,
    frame_of_reference: str,
    header: dict[str, object],
    window: tuple[float, float] | None,
) -> Dataset:
    rows, columns = stored.shape
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = frame_of_reference
    ds.PositionReferenceIndicator = ""
    ds.StudyTime = "101500"
    ds.StudyID = "1"
    ds.ReferringPhysicianName = ""
    ds.Manufacturer = "LungPortal tests"
    ds.BodyPartExamined = "CHEST"
    ds.KVP = 120
    ds.PatientPosition = "FFS"
    for keyword, value in header.items():
        setattr(ds, keyword, value)
    ds.InstanceNumber = number
    ds.ImagePositionPatient = [-175.0, -175.0, z]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.SliceLocation = z
    ds.PixelSpacing = [0.68359375, 0.68359375]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleType = "HU"
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = np.ascontiguousarray(stored, dtype="<i2").tobytes()
    return ds
