"""Uploads: every file checked by content, then a study's slices stored with its queued
prediction, all or nothing."""

from __future__ import annotations

import hashlib
import io
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import PurePath
from typing import IO

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction

from audit import trail
from inference.preprocessing import ACCEPTED_FORMATS, ACCEPTED_FORMATS_TEXT, ImageDecodeError, inspect

from ..models import Patient, Prediction, Scan, Slice
from .predictions import active_version, enqueue_on_commit
from .storage import file_save, files_delete

THUMBNAIL_SIZE = 160


class UploadError(ValidationError):
    """One or more files of an upload were refused; nothing was stored."""


@dataclass(frozen=True)
class CheckedSlice:
    upload: IO[bytes]
    original_name: str
    content_type: str
    extension: str
    sha256: str
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
    """Decide by content whether an uploaded file is a usable CT slice; raise ImageDecodeError if not."""
    data = _read_limited(upload, settings.UPLOAD_MAX_FILE_BYTES)
    found = inspect(data, max_pixels=settings.UPLOAD_MAX_PIXELS)
    image = found.image
    if max(image.size) > settings.UPLOAD_MAX_SIDE:
        raise ImageDecodeError(
            f"the image is {image.width}×{image.height} pixels; the longest side may be "
            f"at most {settings.UPLOAD_MAX_SIDE}"
        )
    if _has_trailing_data(data, found.format):
        raise ImageDecodeError(
            "the file carries extra data after the image (a polyglot?); export the slice again"
        )
    content_type, extension = ACCEPTED_FORMATS[found.format]
    thumb = image.copy()
    thumb.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    buffer = io.BytesIO()
    thumb.save(buffer, format="PNG")
    return CheckedSlice(
        upload=upload,
        original_name=display_name(name or getattr(upload, "name", "")),
        content_type=content_type,
        extension=extension,
        sha256=hashlib.sha256(data).hexdigest(),
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


def _has_trailing_data(data: bytes, fmt: str) -> bool:
    """Bytes after the image's own end marker: how polyglot files (image + HTML/ZIP) are built."""
    if fmt == "PNG":
        end = data.rfind(b"IEND")
        return end == -1 or len(data) > end + 8  # chunk type + CRC
    return not data.rstrip(b"\x00").endswith(b"\xff\xd9")  # JPEG: EOI last (NUL padding allowed)


def _checked_uploads(files: Sequence[IO[bytes]]) -> list[CheckedSlice]:
    if not files:
        raise UploadError({"files": [f"Choose at least one CT slice ({ACCEPTED_FORMATS_TEXT})."]})
    if len(files) > settings.UPLOAD_MAX_FILES:
        raise UploadError(
            {"files": [f"{len(files)} files were sent; at most {settings.UPLOAD_MAX_FILES} per scan."]}
        )
    checked, problems = [], []
    for upload in files:
        name = display_name(getattr(upload, "name", ""))
        try:
            checked.append(slice_check(upload, name=name))
        except ImageDecodeError as exc:
            problems.append(f"{name}: {exc}")
    if problems:
        raise UploadError({"files": problems})
    return checked


def scan_upload(
    *,
    patient: Patient,
    files: Sequence[IO[bytes]],
    uploaded_by: User | None,
    study_date: date | None = None,
    note: str = "",
) -> Scan:
    """Store a study's slices and queue its prediction, all or nothing.

    Every file is checked by content before anything is written; the scan, its slices and a
    queued prediction are committed together, and the task is sent only after the commit.
    """
    checked = _checked_uploads(files)
    version = active_version()
    stored: list[str] = []
    try:
        with transaction.atomic():
            scan = Scan(patient=patient, study_date=study_date or date.today(), note=note or "")
            scan.uploaded_by = uploaded_by
            scan.full_clean(exclude=["patient", "uploaded_by"])
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
    except BaseException:
        files_delete(stored)
        raise
    return scan


def _slice_store(scan: Scan, position: int, item: CheckedSlice, stored: list[str]) -> Slice:
    """Write one checked file and its thumbnail; their names go into `stored` for clean-up."""
    item.upload.seek(0)
    image_name = file_save("slices", item.extension, item.upload.read())
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
        width=item.width,
        height=item.height,
        size_bytes=item.size_bytes,
    )
