"""Uploads: every file checked by content, then a study's slices stored with its queued
prediction, all or nothing."""

from __future__ import annotations

import hashlib
import io
import tempfile
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import PurePath
from typing import IO

import simplejpeg
from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction

from audit import trail
from inference.preprocessing import (
    ACCEPTED_FORMATS,
    ACCEPTED_FORMATS_TEXT,
    ImageDecodeError,
    Inspection,
    image_end,
    inspect,
)

from ..events import STUDY_RECEIVED, publish
from ..models import Patient, Prediction, Scan, Slice, Study
from .predictions import active_version, enqueue_on_commit
from .storage import file_save, files_delete

THUMBNAIL_SIZE = 160


class UploadError(ValidationError):
    """One or more files of an upload were refused; nothing was stored."""


@dataclass(frozen=True)
class CheckedSlice:
    # The copy to store (see `_stored_copy`), spooled to disk when large: a study may hold hundreds.
    content: IO[bytes]
    original_name: str
    content_type: str
    extension: str
    sha256: str
    source_sha256: str
    width: int
    height: int
    size_bytes: int
    thumbnail_png: bytes


def display_name(name: str | None) -> str:
    """The client's file name, reduced to something safe to show (never used as a path)."""
    base = PurePath(str(name or "").replace("\\", "/")).name
    cleaned = "".join(ch for ch in base if unicodedata.category(ch)[0] not in {"C"})
    return cleaned[:100] or "unnamed"


def slice_check(upload: IO[bytes], *, name: str | None = None) -> CheckedSlice:
    """Decide by content whether an uploaded file is a usable CT slice; raise ImageDecodeError if not.

    The file must decode completely and end where its image ends. What is kept is not the upload
    but a lossless PNG of its decoded pixels (`sha256`); the upload's own hash is `source_sha256`.
    """
    data = _read_limited(upload, settings.UPLOAD_MAX_FILE_BYTES)
    found = inspect(data, max_pixels=settings.UPLOAD_MAX_PIXELS)
    image = found.image
    if max(image.size) > settings.UPLOAD_MAX_SIDE:
        raise ImageDecodeError(
            f"the image is {image.width}×{image.height} pixels; the longest side may be "
            f"at most {settings.UPLOAD_MAX_SIDE}"
        )
    if min(image.size) < settings.UPLOAD_MIN_SIDE:
        raise ImageDecodeError(
            f"the image is {image.width}×{image.height} pixels, too small for a CT slice; each side "
            f"must be at least {settings.UPLOAD_MIN_SIDE} (export the slice at full resolution)"
        )
    _check_complete(data, found.format)
    stored = _stored_copy(found)
    content_type, extension = ACCEPTED_FORMATS["PNG"]
    thumb = image.copy()
    thumb.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    buffer = io.BytesIO()
    thumb.save(buffer, format="PNG")
    spool = tempfile.SpooledTemporaryFile(max_size=settings.FILE_UPLOAD_MAX_MEMORY_SIZE)
    spool.write(stored)
    return CheckedSlice(
        content=spool,
        original_name=display_name(name or getattr(upload, "name", "")),
        content_type=content_type,
        extension=extension,
        sha256=hashlib.sha256(stored).hexdigest(),
        source_sha256=hashlib.sha256(data).hexdigest(),
        width=image.width,
        height=image.height,
        size_bytes=len(data),
        thumbnail_png=buffer.getvalue(),
    )


def _read_limited(upload: IO[bytes], limit: int) -> bytes:
    upload.seek(0)
    data = upload.read(limit + 1)
    if len(data) > limit:
        raise ImageDecodeError(f"the file is larger than the {limit // (1024 * 1024)} MB limit")
    return data


# --- the file ends where its image ends, and every pixel was in it ------------------------------


def _check_complete(data: bytes, fmt: str) -> None:
    """Bytes after the image's real end are how polyglots (image + HTML/ZIP) are built; a JPEG must
    also decode without a single libjpeg warning."""
    end = image_end(data, fmt)
    if data[end:].strip(b"\x00"):  # NUL padding (some exporters pad to a block size) is harmless
        raise ImageDecodeError(
            "the file carries extra data after the image (a polyglot?); export the slice again"
        )
    if fmt == "JPEG":
        _jpeg_decode_strictly(data)


_SIMPLEJPEG_TARGETS = {"Gray": "GRAY", "CMYK": "CMYK", "YCCK": "CMYK"}


def _jpeg_decode_strictly(data: bytes) -> None:
    """Decode with libjpeg-turbo, its warnings as errors ("Corrupt JPEG data: premature end of data
    segment" is only a warning to libjpeg, and Pillow fills the rest of the image with grey).
    Pillow's decode stays the one whose pixels are used: it is what the model was trained on.
    Decoding at 1/8 scale still reads every coefficient, for an eighth of the memory and time."""
    try:
        colourspace = str(simplejpeg.decode_jpeg_header(data)[2])
        simplejpeg.decode_jpeg(
            data, colorspace=_SIMPLEJPEG_TARGETS.get(colourspace, "RGB"), min_factor=8, strict=True
        )
    except ValueError as exc:
        detail = str(exc).rstrip(".")
        raise ImageDecodeError(
            f"the image is truncated or corrupt ({detail}); export the slice again"
        ) from exc


# --- what is stored: the decoded pixels and nothing else -----------------------------------------

# Modes PNG holds losslessly and reopens in the same mode.
_PNG_EXACT_MODES = frozenset({"L", "LA", "I;16", "RGB", "RGBA"})


def _stored_copy(found: Inspection) -> bytes:
    """A lossless PNG of the upload's decoded pixels: no EXIF, comments, text chunks or trailing
    bytes. It is proven here to decode to exactly what the upload decoded to (grayscale pixels and
    colourfulness alike), so the stored copy is classified as the upload would have been."""
    decoded = found.decoded if found.decoded is not None else found.image
    if decoded.mode in _PNG_EXACT_MODES:
        pixels = decoded.copy()
    elif decoded.mode in ("P", "PA"):
        pixels = decoded.convert("RGBA")  # the palette's transparency becomes alpha, as to_grayscale does
    elif decoded.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        pixels = decoded.convert("RGB")
    else:  # 1, I, F: the grayscale image the network sees is all there is to keep
        pixels = found.image.copy()
    pixels.info = {}  # Pillow's PNG writer would carry an ICC profile, EXIF and more over from here
    buffer = io.BytesIO()
    pixels.save(buffer, format="PNG")
    stored = buffer.getvalue()
    again = inspect(stored)
    same = again.image.size == found.image.size and again.image.tobytes() == found.image.tobytes()
    if not same or again.colour != found.colour:
        raise ImageDecodeError(
            f"its pixel format ({decoded.mode}) cannot be stored without changing the image; "
            "export the slice as an 8-bit grayscale PNG or JPEG"
        )
    return stored


def _checked_uploads(files: Sequence[IO[bytes]]) -> list[CheckedSlice]:
    if not files:
        raise UploadError({"files": [f"Choose at least one CT slice ({ACCEPTED_FORMATS_TEXT})."]})
    if len(files) > settings.UPLOAD_MAX_FILES:
        raise UploadError(
            {"files": [f"{len(files)} files were sent; at most {settings.UPLOAD_MAX_FILES} per scan."]}
        )
    checked: list[CheckedSlice] = []
    problems: list[str] = []
    pixels = 0
    for upload in files:
        name = display_name(getattr(upload, "name", ""))
        if pixels > settings.UPLOAD_MAX_STUDY_PIXELS:  # stop decoding: the study is too large already
            problems.append(
                f"{name}: not checked, the study passed {_megapixels(settings.UPLOAD_MAX_STUDY_PIXELS)}"
            )
            continue
        try:
            item = slice_check(upload, name=name)
        except ImageDecodeError as exc:
            problems.append(f"{name}: {exc}")
            continue
        checked.append(item)
        pixels += item.width * item.height
    if pixels > settings.UPLOAD_MAX_STUDY_PIXELS:
        problems.insert(
            0,
            f"The study's images hold more than {_megapixels(settings.UPLOAD_MAX_STUDY_PIXELS)} in all; "
            "send it in parts, or at the scanner's resolution.",
        )
    if problems:
        _close(checked)
        raise UploadError({"files": problems})
    return checked


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1_000_000:g} megapixels"


def _close(checked: Sequence[CheckedSlice]) -> None:
    for item in checked:
        item.content.close()


def scan_upload(
    *,
    patient: Patient,
    files: Sequence[IO[bytes]],
    uploaded_by: User | None,
    study_date: date | None = None,
    note: str = "",
    priority: str | None = None,
    indication: str = "",
) -> Scan:
    """Store a study's slices as a new study with one series and queue its prediction, all or nothing.

    Every file is checked by content before anything is written; the study, its series, its slices
    and a queued prediction are committed together, and the task is sent only after the commit.
    """
    # The study's own fields first: a wrong date is told before minutes of decoding, not after.
    study = Study(
        patient=patient,
        study_date=study_date or date.today(),
        priority=priority or Study.Priority.ROUTINE,
        indication=indication,
    )
    study.full_clean(exclude=["patient"])
    scan = Scan(patient=patient, study_date=study.study_date, note=note or "")
    scan.uploaded_by = uploaded_by
    scan.full_clean(exclude=["patient", "study", "uploaded_by"])
    version = active_version()
    checked = _checked_uploads(files)
    stored: list[str] = []
    try:
        with transaction.atomic():
            study.save()
            scan.study = study
            scan.save()
            Slice.objects.bulk_create(
                [_slice_store(scan, position, item, stored) for position, item in enumerate(checked)]
            )
            prediction = Prediction.objects.create(scan=scan, model_version=version, requested_by=uploaded_by)
            trail.record_object(
                trail.Action.UPLOAD,
                scan,
                user=uploaded_by,
                detail=f"{len(checked)} slice(s); prediction {prediction.pk} queued",
            )
            enqueue_on_commit(prediction.pk)
            publish(STUDY_RECEIVED, team=patient.team, subject=scan)
    except BaseException:
        files_delete(stored)
        raise
    finally:
        _close(checked)
    return scan


def _slice_store(scan: Scan, position: int, item: CheckedSlice, stored: list[str]) -> Slice:
    """Write one checked slice's stored copy and its thumbnail; their names go into `stored` for clean-up."""
    item.content.seek(0)
    image_name = file_save("slices", item.extension, item.content.read())
    stored.append(image_name)
    thumb_name = file_save("thumbs", "png", item.thumbnail_png)
    stored.append(thumb_name)
    return Slice(
        scan=scan,
        position=position,
        image=image_name,
        thumbnail=thumb_name,
        original_name=item.original_name,
        content_type=item.content_type,
        sha256=item.sha256,
        source_sha256=item.source_sha256,
        width=item.width,
        height=item.height,
        size_bytes=item.size_bytes,
    )
