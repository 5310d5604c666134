"""DICOM Part 10 files -> CT series in Hounsfield units, or a refusal a person can act on.

Pure functions over bytes: nothing here touches the database or storage, so a caller can refuse a
whole upload before anything is stored. Every decode is bounded before it happens: Rows × Columns
× frames from the header against the per-image and per-request pixel limits (`RequestBudget`), so a
small compressed file cannot unpack into gigabytes. A file is decoded once to check it and again
when its slice is made; no decoded array is kept, so a study's pixels are never all in memory.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import IntEnum
from io import BytesIO
from pathlib import Path
from typing import IO, Any

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.errors import InvalidDicomError
from pydicom.pixels import get_decoder
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    UID,
    CTImageStorage,
    EnhancedCTImageStorage,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    LegacyConvertedEnhancedCTImageStorage,
)

# Used where Django's settings are not configured (scripts, the C-STORE receiver before setup).
_FALLBACKS: dict[str, float] = {
    "UPLOAD_MIN_SIDE": 64,
    "UPLOAD_MAX_SIDE": 8192,
    "UPLOAD_MAX_PIXELS": 40_000_000,
    "UPLOAD_MAX_STUDY_PIXELS": 300 * 1024 * 1024,
    "DICOM_MAX_SERIES_BYTES": 1024**3,
    "DICOM_DEFAULT_WINDOW_CENTER": 40.0,
    "DICOM_DEFAULT_WINDOW_WIDTH": 400.0,
}

_INT16_MIN, _INT16_MAX = np.iinfo(np.int16).min, np.iinfo(np.int16).max
_EARLIEST = date(1900, 1, 1)
# PS3.3 C.4.11 RequestedProcedurePriority onto the worklist's priorities
_PRIORITIES = {"STAT": "stat", "HIGH": "urgent", "MEDIUM": "routine", "LOW": "routine", "ROUTINE": "routine"}
_INT16_LUT_ABOVE = 1 << 16  # pixels past which `windowed` looks int16 values up in a table
_J2K_SYNTAXES = {JPEG2000Lossless, JPEG2000, HTJ2KLossless, HTJ2KLosslessRPCL, HTJ2K}
_JPEG_SYNTAXES = {
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
}
_MULTI_FRAME_CT = {EnhancedCTImageStorage, LegacyConvertedEnhancedCTImageStorage}


# A file's bytes, a seekable binary file holding them (an upload or part spooled to disk), or its path.
Source = bytes | IO[bytes] | Path


class Failure(IntEnum):
    """Why an instance is refused, as DICOM tells a sender (PS3.4 Annex B, PS3.7 C.4, PS3.18 Table
    10.5.3-2): the status of its C-STORE response and the FailureReason of STOW-RS."""

    PROCESSING = 0x0110
    DUPLICATE = 0x0111  # the same SOP Instance UID twice in one delivery
    OUT_OF_RESOURCES = 0xA700  # past a limit: pixels, bytes, slices
    NOT_THIS_SOP_CLASS = 0xA900  # not a CT image the portal can read (scout, colour, no rescale…)
    CANNOT_UNDERSTAND = 0xC000  # not DICOM, damaged, inconsistent with its series
    TRANSFER_SYNTAX = 0xC122  # a transfer syntax no installed decoder reads


class DicomRefused(ValueError):
    """A file or series the portal will not take; str() is a message a person can act on, naming
    the file. `failure` is the DICOM status for the sender; the UIDs are the instance's, where its
    header could be read."""

    def __init__(
        self,
        message: str,
        *,
        failure: Failure = Failure.CANNOT_UNDERSTAND,
        sop_class_uid: str = "",
        sop_instance_uid: str = "",
    ) -> None:
        super().__init__(message)
        self.failure = failure
        self.sop_class_uid = sop_class_uid
        self.sop_instance_uid = sop_instance_uid


class RequestBudget:
    """What one request (an upload, a STOW-RS body, a C-STORE association) may hold: DICOM bytes
    in all, counted across every file and zip (`DICOM_MAX_SERIES_BYTES`), and pixels to decode,
    each image at most `per_image` (`UPLOAD_MAX_PIXELS`) and all at most `per_request`
    (`UPLOAD_MAX_STUDY_PIXELS`), taken from the header before any pixel data is read."""

    def __init__(
        self, *, per_image: int | None = None, per_request: int | None = None, max_bytes: int | None = None
    ) -> None:
        self.per_image = int(per_image if per_image is not None else _setting("UPLOAD_MAX_PIXELS"))
        self.per_request = int(
            per_request if per_request is not None else _setting("UPLOAD_MAX_STUDY_PIXELS")
        )
        self.max_bytes = int(max_bytes if max_bytes is not None else _setting("DICOM_MAX_SERIES_BYTES"))
        self.used = 0
        self.bytes = 0

    def take_bytes(self, name: str, count: int) -> None:
        """Count `count` more bytes of DICOM (as sent, or as unpacked from a zip)."""
        self.bytes += count
        if self.bytes > self.max_bytes:
            raise DicomRefused(
                f"{name}: the DICOM sent together passes {size_text(self.max_bytes)}, the most one upload "
                "may hold; nothing was stored: send the study in parts (a series at a time).",
                failure=Failure.OUT_OF_RESOURCES,
            )

    def take_pixels(self, name: str, pixels: int) -> None:
        if pixels > self.per_image:
            raise DicomRefused(
                f"{name}: holds {_megapixels(pixels)}, more than the {_megapixels(self.per_image)} one image "
                "may have; it was not decoded. Send the series at the scanner's own resolution.",
                failure=Failure.OUT_OF_RESOURCES,
            )
        if self.used + pixels > self.per_request:
            raise DicomRefused(
                f"{name}: not decoded: the images sent together pass {_megapixels(self.per_request)} in "
                "all. Send the study in parts (a series at a time).",
                failure=Failure.OUT_OF_RESOURCES,
            )
        self.used += pixels


@dataclass(frozen=True)
class Refusal:
    """One file left out of a delivery that takes what it can (STOW-RS, C-STORE), and why."""

    name: str
    reason: str
    failure: Failure
    sop_class_uid: str
    sop_instance_uid: str


@dataclass(frozen=True, eq=False)  # eq=False: compared by identity, like the files they read
class DicomInstance:
    name: str  # the file's name as given (e.g. "IM0001.dcm" or "study.zip:series1/IM1")
    sop_instance_uid: str
    sop_class_uid: str
    instance_number: int | None
    location: float | None  # mm along the slice normal: ImagePositionPatient · (row × column cosines)
    rows: int
    columns: int
    window_center: float | None  # the file's own first WindowCenter/WindowWidth, if present and sane
    window_width: float | None
    source_sha256: str  # SHA-256 of the file's bytes as received
    size_bytes: int
    source: Source = field(repr=False)  # the file itself, decoded again where its pixels are wanted

    @property
    def hounsfield(self) -> np.ndarray:
        """int16 (rows, columns), read-only: stored values × RescaleSlope + RescaleIntercept, clipped.
        Decoded on each access and not kept, so hold on to it only while it is used."""
        data = source_bytes(self.source)
        return _decoded(self.name, _parse(self.name, data))


@dataclass(frozen=True)
class DicomSeries:
    study_instance_uid: str
    series_instance_uid: str
    series_number: int | None
    modality: str
    patient_id: str
    patient_name: str  # a readable form of PN ("Given Family"); "" if absent
    patient_birth_date: date | None
    patient_sex: str  # "F", "M", "O" or ""
    accession_number: str
    study_date: date | None
    series_description: str
    slice_thickness: float | None
    rows: int
    columns: int
    instances: tuple[
        DicomInstance, ...
    ]  # by location where all have one, else InstanceNumber, else as received
    # The first instance's Patient and General Study attributes as DICOM JSON (PS3.18 F.2), exactly
    # as sent: the SR we send back must be filed under these, not under our readable forms above.
    source_attributes: dict[str, Any] = field(default_factory=dict)
    study_time: time | None = None
    study_description: str = ""
    priority: str = "routine"  # from RequestedProcedurePriority: "stat", "urgent" or "routine"


def is_dicom(data: bytes) -> bool:
    """A DICOM Part 10 file: a 128-byte preamble, then "DICM"."""
    return len(data) >= 132 and data[128:132] == b"DICM"


def source_bytes(source: Source) -> bytes:
    if isinstance(source, bytes):
        return source
    if isinstance(source, Path):
        return source.read_bytes()
    source.seek(0)
    return source.read()


def read_series(
    files: Iterable[tuple[str, Source]],
    *,
    max_slices: int,
    min_side: int | None = None,
    max_side: int | None = None,
    budget: RequestBudget | None = None,
    refused: list[Refusal] | None = None,
) -> list[DicomSeries]:
    """Every file must be a DICOM Part 10 CT image with pixel data the portal can decode; grouped
    by SeriesInstanceUID (in the order series first appear), each ordered. Raises DicomRefused on
    the first problem, naming the file and saying what to do; given a `refused` list, a refused
    file is noted there instead and the rest are read (a PACS delivery takes what it can).

    Files are read one at a time (a file object is read when its turn comes). `min_side`/`max_side`
    default to the UPLOAD_MIN_SIDE/UPLOAD_MAX_SIDE settings, `budget` to a fresh one from the
    UPLOAD_MAX_PIXELS/UPLOAD_MAX_STUDY_PIXELS settings.
    """
    reader = SeriesReader(max_slices=max_slices, min_side=min_side, max_side=max_side, budget=budget)
    for name, source in files:
        try:
            reader.add(name, source)
        except DicomRefused as refusal:
            if refused is None:
                raise
            refused.append(
                Refusal(name, str(refusal), refusal.failure, refusal.sop_class_uid, refusal.sop_instance_uid)
            )
    return reader.series()


class SeriesReader:
    """`read_series` one file at a time, for a delivery that answers each file as it arrives
    (C-STORE): `add` checks a file (DicomRefused if it will not be kept, nothing kept of it then),
    `series` gives what was added."""

    def __init__(
        self,
        *,
        max_slices: int,
        min_side: int | None = None,
        max_side: int | None = None,
        budget: RequestBudget | None = None,
    ) -> None:
        self.max_slices = max_slices
        self.min_side = int(min_side if min_side is not None else _setting("UPLOAD_MIN_SIDE"))
        self.max_side = int(max_side if max_side is not None else _setting("UPLOAD_MAX_SIDE"))
        self.budget = budget if budget is not None else RequestBudget()
        self.groups: dict[str, _Group] = {}
        self.seen: dict[str, str] = {}  # SOPInstanceUID -> the name of the file that carried it

    def add(self, name: str, source: Source) -> None:
        _read_file(
            name,
            source,
            self.groups,
            self.seen,
            max_slices=self.max_slices,
            min_side=self.min_side,
            max_side=self.max_side,
            budget=self.budget,
        )

    def series(self) -> list[DicomSeries]:
        return [group.series() for group in self.groups.values()]

    def __len__(self) -> int:
        return len(self.seen)


def _read_file(
    name: str,
    source: Source,
    groups: dict[str, _Group],
    seen: dict[str, str],
    *,
    max_slices: int,
    min_side: int,
    max_side: int,
    budget: RequestBudget,
) -> None:
    """Check one file and add it to its series; the dataset and its pixels go when this returns."""
    data = source_bytes(source)
    uids = {"sop_class_uid": "", "sop_instance_uid": ""}
    group: _Group | None = None
    try:
        ds = _parse(name, data)
        uids = {"sop_class_uid": _text(ds, "SOPClassUID"), "sop_instance_uid": _text(ds, "SOPInstanceUID")}
        sop_uid, series_uid, study_uid = _uids(name, ds)
        _check_image(name, ds, min_side=min_side, max_side=max_side)
        _check_dates(name, ds)
        if sop_uid in seen:
            raise DicomRefused(
                f"{name}: has the same SOPInstanceUID ({sop_uid}) as {seen[sop_uid]}; the image was "
                "sent twice. Remove one copy and upload again.",
                failure=Failure.DUPLICATE,
            )
        group = groups.get(series_uid)
        if group is not None:
            _check_same_series(name, ds, group)
            if len(group.instances) >= max_slices:
                raise DicomRefused(
                    f"{name}: series {series_uid} has more than {max_slices} slices, the most one scan may "
                    "hold. Upload a thinner selection of the series (for example the lung reconstruction).",
                    failure=Failure.OUT_OF_RESOURCES,
                )
        budget.take_pixels(name, int(ds.Rows) * int(ds.Columns) * (_integer(ds, "NumberOfFrames") or 1))
        _check_codestream(name, ds)
        instance = _instance(name, source, data, ds, sop_uid)
    except DicomRefused as refusal:
        refusal.sop_class_uid = refusal.sop_class_uid or uids["sop_class_uid"]
        refusal.sop_instance_uid = refusal.sop_instance_uid or uids["sop_instance_uid"]
        raise
    except BaseException as error:  # odd values in a damaged header, or a decoder's panic
        if not _is_damage(error):
            raise
        raise DicomRefused(
            f"{name}: the DICOM file is damaged and cannot be read ({type(error).__name__}: {error}). "
            "Export it again from the PACS or scanner.",
            sop_class_uid=uids["sop_class_uid"],
            sop_instance_uid=uids["sop_instance_uid"],
        ) from error
    seen[sop_uid] = name
    if group is None:
        group = groups[series_uid] = _Group(_series_header(ds, study_uid, series_uid), name)
    group.instances.append(instance)


def model_window(
    instance: DicomInstance,
    *,
    default_center: float | None = None,
    default_width: float | None = None,
) -> tuple[float, float, str]:
    """(center, width, source): the file's own first window where it has a sane one ("file"),
    else the default ("default"; DICOM_DEFAULT_WINDOW_CENTER/WIDTH where not given)."""
    if instance.window_center is not None and instance.window_width is not None:
        return instance.window_center, instance.window_width, "file"
    center = default_center if default_center is not None else _setting("DICOM_DEFAULT_WINDOW_CENTER")
    width = default_width if default_width is not None else _setting("DICOM_DEFAULT_WINDOW_WIDTH")
    return float(center), float(width), "default"


def windowed(hounsfield: np.ndarray, center: float, width: float) -> np.ndarray:
    """uint8 display/model input: DICOM's linear VOI LUT (PS3.3 C.11.2.1.2.1) onto 0..255, rounded.

    Values at or below c - 0.5 - (w-1)/2 are 0, above c - 0.5 + (w-1)/2 are 255, and in between
    ((x - (c - 0.5)) / (w - 1) + 0.5) × 255."""
    if not (math.isfinite(center) and math.isfinite(width)) or width < 1:
        raise ValueError(f"a window needs a finite centre and a width of at least 1, not {center}/{width}")
    values = np.asarray(hounsfield)
    if values.dtype == np.int16 and values.size > _INT16_LUT_ABOVE:
        # Every int16 through the formula once, then a table lookup: 3 bytes a pixel, not 8 or more
        table = windowed(np.arange(_INT16_MIN, _INT16_MAX + 1, dtype=np.int32), center, width)
        return table[values.view(np.uint16) ^ 0x8000]  # the value's offset from -32768, exactly
    if width == 1:  # the formula's middle range is empty: a threshold
        return np.where(values > center - 0.5, 255, 0).astype(np.uint8)
    # One float64 array, worked on in place
    scaled = np.array(values, dtype=np.float64)
    scaled -= center - 0.5
    scaled /= width - 1
    scaled += 0.5
    np.clip(scaled, 0.0, 1.0, out=scaled)
    scaled *= 255.0
    np.rint(scaled, out=scaled)
    return scaled.astype(np.uint8)


def syntax_name(transfer_syntax: str) -> str:
    """ "JPEG-LS Lossless Image Compression (1.2.840.10008.1.2.4.80)", or the bare UID if unknown."""
    uid = UID(transfer_syntax)
    return f"{uid.name} ({uid})" if uid.is_transfer_syntax else f"{uid} (an unknown transfer syntax)"


def can_decode(transfer_syntax: str) -> bool:
    """Whether an installed pixel data plugin (pydicom's own, pylibjpeg and friends) decodes it."""
    try:
        return bool(get_decoder(UID(transfer_syntax)).is_available)
    except NotImplementedError:  # pydicom has no decoder at all for this syntax
        return False


# --- helpers ------------------------------------------------------------------------------------


class _Group:
    """One series while its files arrive."""

    def __init__(self, header: dict[str, Any], first_name: str) -> None:
        self.header = header
        self.first_name = first_name
        self.instances: list[DicomInstance] = []

    def series(self) -> DicomSeries:
        return DicomSeries(**self.header, instances=tuple(_ordered(self.instances)))


def _is_damage(error: BaseException) -> bool:
    """An error a damaged file can cause, as opposed to one that must stop the process. Rust
    decoders (pylibjpeg-rle) panic on some damaged streams, and pyo3's PanicException derives
    from BaseException, so `except Exception` alone would let a bad upload crash the worker."""
    if isinstance(error, MemoryError):
        return False
    return isinstance(error, Exception) or type(error).__name__ == "PanicException"


def _setting(name: str) -> float:
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        return float(getattr(settings, name))
    except (ImproperlyConfigured, AttributeError):
        return _FALLBACKS[name]


def _parse(name: str, data: bytes) -> Dataset:
    if not is_dicom(data):
        raise DicomRefused(f"{name}: is not a DICOM file ({_looks_like(data)}). {_NOT_DICOM_HINT}")
    try:
        return dcmread(BytesIO(data))  # never force: a file without a proper header is refused
    except InvalidDicomError as error:
        raise DicomRefused(f"{name}: is not a readable DICOM file ({error}). {_NOT_DICOM_HINT}") from error
    except Exception as error:  # pydicom raises many kinds on damaged files
        raise DicomRefused(
            f"{name}: the DICOM file is damaged and cannot be read ({type(error).__name__}: {error}). "
            "Export it again from the PACS or scanner."
        ) from error


_NOT_DICOM_HINT = "Upload DICOM Part 10 files as exported by the scanner or PACS, or a zip of them."


def _looks_like(data: bytes) -> str:
    if data.startswith(b"\xff\xd8\xff"):
        return "it is a JPEG image; upload slices as images separately"
    if data.startswith(b"\x89PNG"):
        return "it is a PNG image; upload slices as images separately"
    if data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "it is a zip archive"
    if data.startswith(b"\x1f\x8b"):
        return "it is a gzip archive; unpack it or zip it instead"
    if len(data) < 132:
        return f"only {len(data)} bytes"
    return "no 'DICM' marker at byte 128; files without the Part 10 header are not accepted"


def _uids(name: str, ds: Dataset) -> tuple[str, str, str]:
    values = []
    for keyword in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"):
        value = _text(ds, keyword)
        if not value:
            raise DicomRefused(
                f"{name}: has no {keyword}, so it cannot be placed in a study. Export it again from the "
                "PACS or scanner; anonymisers must keep (or replace) the UIDs."
            )
        values.append(value)
    return values[0], values[1], values[2]


def _check_dates(name: str, ds: Dataset) -> None:
    """Dates the record would refuse (cases.validators.plausible_date) are refused here, before the
    sender is told anything: from 1900, and not past tomorrow (a day of slack for time zones)."""
    for keyword in ("StudyDate", "PatientBirthDate"):
        value = _date(ds, keyword)
        if value is not None and not (_EARLIEST <= value <= date.today() + timedelta(days=1)):
            raise DicomRefused(
                f"{name}: its {keyword} ({value:%Y-%m-%d}) is not a plausible date (from 1900, not in the "
                "future). Correct it at the PACS or scanner and send it again.",
                failure=Failure.NOT_THIS_SOP_CLASS,
            )


def _check_image(name: str, ds: Dataset, *, min_side: int, max_side: int) -> None:
    modality = _text(ds, "Modality")
    if modality != "CT":
        shown = f"Modality {modality}" if modality else "no Modality"
        raise DicomRefused(
            f"{name}: is not a CT image ({shown}); only CT series can be read. Leave it out.",
            failure=Failure.NOT_THIS_SOP_CLASS,
        )
    sop_class = _text(ds, "SOPClassUID")
    if sop_class in _MULTI_FRAME_CT:
        raise DicomRefused(
            f"{name}: is an {UID(sop_class).name} (multi-frame) object; export the series as classic "
            "single-frame CT images (CT Image Storage) and upload again.",
            failure=Failure.NOT_THIS_SOP_CLASS,
        )
    if sop_class != CTImageStorage:
        shown = UID(sop_class).name if sop_class else "no SOPClassUID"
        raise DicomRefused(
            f"{name}: is a CT {shown} object, not a CT image (CT Image Storage); screenshots, dose reports "
            "and other non-slice objects cannot be read. Leave it out.",
            failure=Failure.NOT_THIS_SOP_CLASS,
        )
    if "LOCALIZER" in _image_type(ds):
        raise DicomRefused(
            f"{name}: is a localizer (scout) image, not an axial slice. Leave the scout series out.",
            failure=Failure.NOT_THIS_SOP_CLASS,
        )
    if "PixelData" not in ds:
        raise DicomRefused(
            f"{name}: has no pixel data (PixelData); there is no image to read. Leave it out.",
            failure=Failure.NOT_THIS_SOP_CLASS,
        )
    _check_pixels(name, ds, min_side=min_side, max_side=max_side)


def _check_pixels(name: str, ds: Dataset, *, min_side: int, max_side: int) -> None:
    frames = _integer(ds, "NumberOfFrames")
    if frames is not None and frames > 1:
        raise DicomRefused(
            f"{name}: holds {frames} frames; only single-frame CT images can be read. Export the series "
            "as one file per slice.",
            failure=Failure.NOT_THIS_SOP_CLASS,
        )
    photometric = _text(ds, "PhotometricInterpretation")
    if _integer(ds, "SamplesPerPixel") not in (None, 1) or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise DicomRefused(
            f"{name}: is a colour image ({photometric or 'no PhotometricInterpretation'}); CT slices are "
            "greyscale. Export the original CT images, not screenshots.",
            failure=Failure.NOT_THIS_SOP_CLASS,
        )
    rows, columns = _integer(ds, "Rows"), _integer(ds, "Columns")
    if rows is None or columns is None:
        raise DicomRefused(f"{name}: has no Rows/Columns; the file is incomplete. Export it again.")
    if min(rows, columns) < min_side or max(rows, columns) > max_side:
        raise DicomRefused(
            f"{name}: is {columns}×{rows} pixels; slices must be between {min_side} and {max_side} pixels "
            "on each side.",
            failure=Failure.OUT_OF_RESOURCES if max(rows, columns) > max_side else Failure.NOT_THIS_SOP_CLASS,
        )
    if "RescaleSlope" not in ds or "RescaleIntercept" not in ds:
        raise DicomRefused(
            f"{name}: has no RescaleSlope/RescaleIntercept, so its values cannot be turned into "
            "Hounsfield units. Export the original CT images from the scanner or PACS.",
            failure=Failure.NOT_THIS_SOP_CLASS,
        )
    transfer_syntax = _text(ds.file_meta, "TransferSyntaxUID")
    if not transfer_syntax:
        raise DicomRefused(
            f"{name}: its file meta information has no TransferSyntaxUID, so its pixels cannot be "
            "decoded. Export it again."
        )
    if not can_decode(transfer_syntax):
        raise DicomRefused(
            f"{name}: is encoded as {syntax_name(transfer_syntax)}, which no installed decoder reads. "
            "Export the series uncompressed (Explicit VR Little Endian) or as JPEG 2000 / JPEG-LS "
            "lossless or RLE.",
            failure=Failure.TRANSFER_SYNTAX,
        )


def _series_header(ds: Dataset, study_uid: str, series_uid: str) -> dict[str, Any]:
    return {
        "study_instance_uid": study_uid,
        "series_instance_uid": series_uid,
        "series_number": _integer(ds, "SeriesNumber"),
        "modality": _text(ds, "Modality"),
        "patient_id": _text(ds, "PatientID"),
        "patient_name": readable_name(ds.get("PatientName")),
        "patient_birth_date": _date(ds, "PatientBirthDate"),
        "patient_sex": _sex(ds),
        "accession_number": _text(ds, "AccessionNumber"),
        "study_date": _date(ds, "StudyDate"),
        "study_time": _time(ds, "StudyTime"),
        "study_description": _text(ds, "StudyDescription"),
        "priority": _PRIORITIES.get(_text(ds, "RequestedProcedurePriority").upper(), "routine"),
        "series_description": _text(ds, "SeriesDescription"),
        "slice_thickness": _number(ds, "SliceThickness"),
        "rows": int(ds.Rows),
        "columns": int(ds.Columns),
        "source_attributes": source_attributes(ds),
    }


# What a report about the series copies from it (PS3.3 C.7.1.1 Patient, C.7.2.1 General Study),
# with the character set their text is in.
SOURCE_KEYWORDS = (
    "SpecificCharacterSet",
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "ReferringPhysicianName",
    "AccessionNumber",
    "StudyDescription",
)


def source_attributes(ds: Dataset) -> dict[str, Any]:
    """The SOURCE_KEYWORDS elements the file has, as DICOM JSON; `Dataset.from_json` gives them back."""
    kept = Dataset()
    for keyword in SOURCE_KEYWORDS:
        if keyword in ds:
            kept[keyword] = ds[keyword]
    # An element pydicom cannot put in JSON (a damaged value) is left out, as if not sent, rather
    # than refusing the series for it.
    return kept.to_json_dict(suppress_invalid_tags=True)


def _check_same_series(name: str, ds: Dataset, group: _Group) -> None:
    header, first = group.header, group.first_name
    rows, columns = int(ds.Rows), int(ds.Columns)
    if (rows, columns) != (header["rows"], header["columns"]):
        raise DicomRefused(
            f"{name}: is {columns}×{rows} pixels but {first}, of the same series "
            f"({header['series_instance_uid']}), is {header['columns']}×{header['rows']}; a series must "
            "have one size. Export the series again or leave the odd file out."
        )
    if _text(ds, "StudyInstanceUID") != header["study_instance_uid"]:
        raise DicomRefused(
            f"{name}: belongs to series {header['series_instance_uid']} like {first} but names another "
            "study (StudyInstanceUID); the files are inconsistent. Export the study again."
        )
    if _text(ds, "PatientID") != header["patient_id"]:
        raise DicomRefused(
            f"{name}: belongs to series {header['series_instance_uid']} like {first} but names another "
            "patient (PatientID); the files are inconsistent. Export the study again."
        )


def _instance(name: str, source: Source, data: bytes, ds: Dataset, sop_uid: str) -> DicomInstance:
    _decoded(name, ds)  # decodable, to Hounsfield units: checked now, made again when stored
    center, width = _window(ds)
    return DicomInstance(
        name=name,
        sop_instance_uid=sop_uid,
        sop_class_uid=_text(ds, "SOPClassUID"),
        instance_number=_integer(ds, "InstanceNumber"),
        location=_location(ds),
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        window_center=center,
        window_width=width,
        source_sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        source=source,
    )


def _codestream_parameters(syntax: UID, frame: bytes) -> dict[str, Any]:
    if syntax in _J2K_SYNTAXES:
        import openjpeg

        return dict(openjpeg.get_parameters(frame))
    import libjpeg

    return dict(libjpeg.get_parameters(frame))


def _check_codestream(name: str, ds: Dataset) -> None:
    """A JPEG or JPEG 2000 image decodes to the size its own codestream header says, whatever
    Rows/Columns say: read that header (no pixels) and refuse a file where they differ, so a small
    crafted file cannot decode to an image of any size. RLE decodes into Rows × Columns as given."""
    syntax = UID(_text(ds.file_meta, "TransferSyntaxUID"))
    if syntax not in _J2K_SYNTAXES | _JPEG_SYNTAXES:
        return
    try:
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
        found: dict[str, Any] = dict(_codestream_parameters(syntax, frame))
    except Exception as error:  # a damaged stream: the decoder would fail the same way
        raise DicomRefused(
            f"{name}: its compressed pixel data ({syntax_name(syntax)}) cannot be read ({error}). "
            "Export it again, uncompressed if possible."
        ) from error
    size = (int(found.get("rows", -1)), int(found.get("columns", -1)))
    samples = int(found.get("samples_per_pixel", found.get("nr_components", 1)))
    if size != (int(ds.Rows), int(ds.Columns)) or samples != 1:
        raise DicomRefused(
            f"{name}: its compressed image is {size[1]}x{size[0]} pixels with {samples} component(s), but "
            f"its header says {ds.Columns}x{ds.Rows} greyscale; the file is damaged or crafted, and was "
            "not decoded. Export it again."
        )


def _decoded(name: str, ds: Dataset) -> np.ndarray:
    """The image in Hounsfield units (read-only int16); its size was checked from the header."""
    transfer_syntax = _text(ds.file_meta, "TransferSyntaxUID")
    try:
        stored = ds.pixel_array
    except BaseException as error:  # plugins raise many kinds on damaged streams
        if not _is_damage(error):
            raise
        raise DicomRefused(
            f"{name}: its pixel data ({syntax_name(transfer_syntax)}) cannot be decoded "
            f"({type(error).__name__}: {error}). Export it again, uncompressed if possible."
        ) from error
    if stored.shape != (int(ds.Rows), int(ds.Columns)):
        raise DicomRefused(
            f"{name}: its pixel data has shape {stored.shape}, not Rows×Columns; the file is damaged. "
            "Export it again."
        )
    hounsfield = _to_hounsfield(stored, _number(ds, "RescaleSlope"), _number(ds, "RescaleIntercept"), name)
    hounsfield.setflags(write=False)
    return hounsfield


def _megapixels(count: int) -> str:
    return f"{count / 1_000_000:.3g} megapixels"


def size_text(count: int) -> str:
    return f"{count / (1024 * 1024):g} MB" if count >= 1024 * 1024 else f"{count} bytes"


def _to_hounsfield(stored: np.ndarray, slope: float | None, intercept: float | None, name: str) -> np.ndarray:
    if slope is None or intercept is None or slope == 0:
        raise DicomRefused(
            f"{name}: its RescaleSlope/RescaleIntercept ({slope}/{intercept}) are not usable numbers, so "
            "its values cannot be turned into Hounsfield units. Export the original CT images."
        )
    if slope == 1 and intercept == int(intercept):  # the usual case: exact integer arithmetic, in place
        values: np.ndarray = stored.astype(np.int32)
        values += int(intercept)
    else:
        values = stored.astype(np.float64)
        values *= slope
        values += intercept
        np.rint(values, out=values)
    np.clip(values, _INT16_MIN, _INT16_MAX, out=values)
    return values.astype(np.int16)


def _ordered(instances: list[DicomInstance]) -> list[DicomInstance]:
    if all(instance.location is not None for instance in instances):
        return sorted(
            instances,
            key=lambda i: (i.location, i.instance_number is None, i.instance_number or 0),
        )
    if all(instance.instance_number is not None for instance in instances):
        return sorted(instances, key=lambda i: i.instance_number or 0)
    return list(instances)


def _location(ds: Dataset) -> float | None:
    position = _numbers(ds, "ImagePositionPatient", 3)
    orientation = _numbers(ds, "ImageOrientationPatient", 6)
    if position is None or orientation is None:
        return None
    normal = np.cross(orientation[:3], orientation[3:])
    if not np.any(normal):
        return None
    return float(np.dot(position, normal))


def _window(ds: Dataset) -> tuple[float | None, float | None]:
    center, width = _first_number(ds, "WindowCenter"), _first_number(ds, "WindowWidth")
    if center is None or width is None or width < 1:  # PS3.3 C.11.2.1.2.1: width >= 1
        return None, None
    return center, width


def readable_name(value: object) -> str:
    """A PersonName as people write it: "Jane Roe" for "Roe^Jane"; the raw form where unusual."""
    if value is None:
        return ""
    raw = str(value).strip()
    alphabetic = raw.split("=")[0]
    parts = [part.strip() for part in alphabetic.split("^")]
    if not alphabetic or len(parts) > 5:
        return " ".join(raw.replace("^", " ").replace("=", " ").split())
    parts += [""] * (5 - len(parts))
    family, given, middle, prefix, suffix = parts
    return " ".join(part for part in (prefix, given, middle, family, suffix) if part)


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    return str(value).strip().replace("\x00", "")


def _integer(ds: Dataset, keyword: str) -> int | None:
    number = _number(ds, keyword)
    return int(number) if number is not None and number == int(number) else None


def _number(ds: Dataset, keyword: str) -> float | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _first_number(ds: Dataset, keyword: str) -> float | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        value = [value]
    for item in value:
        try:
            number = float(item)
        except (TypeError, ValueError):
            return None
        return number if math.isfinite(number) else None
    return None


def _numbers(ds: Dataset, keyword: str, count: int) -> np.ndarray | None:
    value = ds.get(keyword)
    try:
        numbers = np.array([float(item) for item in value], dtype=np.float64) if value is not None else None
    except (TypeError, ValueError):
        return None
    if numbers is None or numbers.shape != (count,) or not np.all(np.isfinite(numbers)):
        return None
    return numbers


def _image_type(ds: Dataset) -> list[str]:
    value = ds.get("ImageType")
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    return [str(item).strip().upper() for item in items]


def _date(ds: Dataset, keyword: str) -> date | None:
    value = _text(ds, keyword)
    for pattern in ("%Y%m%d", "%Y.%m.%d"):  # the second is ACR-NEMA's, still seen in old archives
        try:
            return datetime.strptime(value, pattern).date()
        except ValueError:
            continue
    return None


def _time(ds: Dataset, keyword: str) -> time | None:
    """A TM value (HHMMSS.FFFFFF, any trailing part left out) as a time, or None."""
    value = _text(ds, keyword).replace(":", "")  # ACR-NEMA wrote colons
    digits, _, fraction = value.partition(".")
    if not digits.isdigit() or len(digits) not in (2, 4, 6):
        return None
    hour, minute, second = int(digits[:2]), int(digits[2:4] or 0), int(digits[4:6] or 0)
    micro = int((fraction + "000000")[:6]) if fraction.isdigit() else 0
    try:
        return time(hour, minute, min(second, 59), micro)  # 60: a leap second
    except ValueError:
        return None


def _sex(ds: Dataset) -> str:
    value = _text(ds, "PatientSex").upper()
    return value if value in ("F", "M", "O") else ""
