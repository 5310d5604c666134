"""DICOM series into the record, however they arrive (upload, STOW-RS, C-STORE).

Each series becomes a scan: per slice, its Hounsfield units as a 16-bit PNG (what the viewer's
window/level works on), the model's 8-bit input made with a window (the file's own, else the
configured default; the scan records which) and a thumbnail; the scan's DICOM header is kept
beside it. A whole upload is stored, with one queued prediction per scan, or nothing is."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import IO

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from PIL import Image

from audit import trail
from cases.models import Patient, Prediction, Scan, Slice
from cases.services.predictions import active_version, enqueue_on_commit
from cases.services.storage import file_save, files_delete
from cases.services.uploads import THUMBNAIL_SIZE, UploadError, display_name, scan_upload
from webhooks.events import emit

from .archive import unpack_zip
from .pixels import hounsfield_png
from .reading import DicomInstance, DicomRefused, DicomSeries, is_dicom, model_window, read_series, windowed

ZIP_MAGIC = b"PK\x03\x04"
HEAD_BYTES = 132  # a DICOM Part 10 file says "DICM" at 128


@dataclass(frozen=True)
class PreparedSlice:
    """One instance's files, made before the transaction (decoding is the slow part)."""

    image_png: bytes
    hounsfield_png: bytes
    thumbnail_png: bytes
    name: str
    source_sha256: str
    size_bytes: int
    sop_instance_uid: str
    sop_class_uid: str
    instance_number: int | None
    location: float | None
    window: tuple[float, float, str]
    width: int
    height: int


def upload_files(files: Sequence[IO[bytes]]) -> list[tuple[str, bytes]] | None:
    """The (name, bytes) of a DICOM upload (.dcm files, zips of them), or None for JPEG/PNG slices.
    A mix of both is refused: a study is one or the other."""
    kinds = {}
    for upload in files:  # by their first bytes: JPEG/PNG slices are not read here at all
        upload.seek(0)
        kinds[upload] = _kind(upload.read(HEAD_BYTES))
        upload.seek(0)
    if set(kinds.values()) <= {"image"}:
        return None
    if "image" in kinds.values():
        odd = ", ".join(display_name(getattr(u, "name", "")) for u, kind in kinds.items() if kind != "image")
        raise UploadError(
            {
                "files": [
                    f"{odd}: DICOM (or a zip), sent with JPEG/PNG slices. Send either DICOM files "
                    "(.dcm or a .zip of them) or JPEG/PNG slices, not both."
                ]
            }
        )
    contents, total = [], 0
    for upload in files:
        data = upload.read(settings.DICOM_MAX_SERIES_BYTES + 1 - total)
        total += len(data)
        if total > settings.DICOM_MAX_SERIES_BYTES:
            raise DicomRefused(
                f"The upload holds more than {settings.DICOM_MAX_SERIES_BYTES // 1024**2} MB of DICOM; "
                "send the study in parts."
            )
        contents.append((display_name(getattr(upload, "name", "")), data))
    unpacked: list[tuple[str, bytes]] = []
    for name, data in contents:
        if _kind(data) == "zip":
            unpacked.extend(
                unpack_zip(
                    data,
                    name=name,
                    max_files=settings.UPLOAD_MAX_FILES,
                    max_bytes=settings.DICOM_MAX_SERIES_BYTES,
                    max_file_bytes=settings.UPLOAD_MAX_FILE_BYTES,
                )
            )
        else:
            unpacked.append((name, data))
    if len(unpacked) > settings.UPLOAD_MAX_FILES:
        raise DicomRefused(
            f"{len(unpacked)} DICOM files were sent; at most {settings.UPLOAD_MAX_FILES} per upload."
        )
    return unpacked


def _kind(data: bytes) -> str:
    if data.startswith(ZIP_MAGIC):
        return "zip"
    return "dicom" if is_dicom(data) else "image"


def study_upload(
    *,
    patient: Patient,
    files: Sequence[IO[bytes]],
    uploaded_by: User | None,
    study_date: date | None = None,
    note: str = "",
    confirm_patient: bool = False,
) -> list[Scan]:
    """An upload by hand: JPEG/PNG slices become one scan, DICOM files one scan per series.

    A series whose PatientID is not the chosen patient's MRN is refused unless the clinician
    confirms it is theirs (`confirm_patient`)."""
    try:
        dicom = upload_files(files)
        if dicom is None:
            return [
                scan_upload(
                    patient=patient, files=files, uploaded_by=uploaded_by, study_date=study_date, note=note
                )
            ]
        series = read_series(dicom, max_slices=settings.UPLOAD_MAX_FILES)
    except DicomRefused as refused:
        raise UploadError({"files": [str(refused)]}) from None
    strangers = sorted({s.patient_id for s in series if s.patient_id.strip() != patient.mrn.strip()})
    if strangers and not confirm_patient:
        raise UploadError(
            {
                "confirm_patient": [
                    f"The series' PatientID ({', '.join(strangers) or 'empty'}) is not this patient's MRN "
                    f"({patient.mrn}). Check that you chose the right patient; if so, confirm to store it."
                ]
            }
        )
    return series_store(
        patient=patient,
        series=series,
        uploaded_by=uploaded_by,
        via=Scan.Received.UPLOAD,
        note=note,
        study_date=study_date,
    )


def series_store(
    *,
    patient: Patient,
    series: Sequence[DicomSeries],
    uploaded_by: User | None,
    via: str,
    note: str = "",
    study_date: date | None = None,
    sender: str = "",
) -> list[Scan]:
    """Store each series as a scan with its queued prediction, all in one transaction; files
    written for a refused or failed attempt are removed."""
    version = active_version()
    scans = [_scan(patient, item, uploaded_by, via, note, study_date) for item in series]
    for scan in scans:  # the study's own fields first: a wrong date is told before decoding
        scan.full_clean(exclude=["patient", "uploaded_by"])
    prepared = [[_prepared(instance) for instance in item.instances] for item in series]
    stored: list[str] = []
    try:
        with transaction.atomic():
            for scan, item, slices in zip(scans, series, prepared, strict=True):
                center, width, source = slices[0].window
                scan.window_center, scan.window_width, scan.window_source = center, width, source
                scan.save()
                Slice.objects.bulk_create(
                    [
                        _slice(scan, position, prepared_slice, stored)
                        for position, prepared_slice in enumerate(slices)
                    ]
                )
                prediction = Prediction.objects.create(
                    scan=scan, model_version=version, requested_by=uploaded_by
                )
                trail.record_object(
                    trail.Action.UPLOAD,
                    scan,
                    user=uploaded_by,
                    detail=f"DICOM series {item.series_instance_uid}: {len(slices)} slice(s) by "
                    f"{Scan.Received(via).label}{f' from {sender}' if sender else ''}; "
                    f"prediction {prediction.pk} queued",
                )
                enqueue_on_commit(prediction.pk)
                emit("study.received", team=patient.team, subject=scan)
    except BaseException:
        files_delete(stored)
        raise
    return scans


def _scan(
    patient: Patient,
    item: DicomSeries,
    uploaded_by: User | None,
    via: str,
    note: str,
    study_date: date | None,
) -> Scan:
    return Scan(
        patient=patient,
        study_date=item.study_date or study_date or date.today(),
        note=note or "",
        uploaded_by=uploaded_by,
        received_via=via,
        modality=item.modality,
        study_instance_uid=item.study_instance_uid,
        series_instance_uid=item.series_instance_uid,
        series_number=item.series_number,
        series_description=item.series_description[:64],
        accession_number=item.accession_number[:16],
        slice_thickness=item.slice_thickness,
        dicom_patient_id=item.patient_id[:64],
        dicom_patient_name=item.patient_name[:200],
        dicom_birth_date=item.patient_birth_date,
        dicom_sex=item.patient_sex[:16],
    )


def _prepared(instance: DicomInstance) -> PreparedSlice:
    center, width, source = model_window(
        instance,
        default_center=settings.DICOM_DEFAULT_WINDOW_CENTER,
        default_width=settings.DICOM_DEFAULT_WINDOW_WIDTH,
    )
    grey = Image.fromarray(windowed(instance.hounsfield, center, width), mode="L")
    image = io.BytesIO()
    grey.save(image, format="PNG")
    thumb = grey.copy()
    thumb.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    thumbnail = io.BytesIO()
    thumb.save(thumbnail, format="PNG")
    return PreparedSlice(
        image_png=image.getvalue(),
        hounsfield_png=hounsfield_png(instance.hounsfield),
        thumbnail_png=thumbnail.getvalue(),
        name=instance.name[:255],
        source_sha256=instance.source_sha256,
        size_bytes=instance.size_bytes,
        sop_instance_uid=instance.sop_instance_uid,
        sop_class_uid=instance.sop_class_uid,
        instance_number=instance.instance_number,
        location=instance.location,
        window=(center, width, source),
        width=instance.hounsfield.shape[1],
        height=instance.hounsfield.shape[0],
    )


def _slice(scan: Scan, position: int, item: PreparedSlice, stored: list[str]) -> Slice:
    image = file_save("slices", "png", item.image_png)
    stored.append(image)
    thumbnail = file_save("thumbs", "png", item.thumbnail_png)
    stored.append(thumbnail)
    hounsfield = file_save("hounsfield", "png", item.hounsfield_png)
    stored.append(hounsfield)
    return Slice(
        scan=scan,
        position=position,
        image=image,
        thumbnail=thumbnail,
        original_name=item.name,
        content_type="image/png",
        sha256=hashlib.sha256(item.image_png).hexdigest(),
        source_sha256=item.source_sha256,
        width=item.width,
        height=item.height,
        size_bytes=item.size_bytes,
        sop_instance_uid=item.sop_instance_uid,
        sop_class_uid=item.sop_class_uid,
        instance_number=item.instance_number,
        location=item.location,
        hounsfield=hounsfield,
        hounsfield_sha256=hashlib.sha256(item.hounsfield_png).hexdigest(),
    )
