"""DICOM series into the record, however they arrive (upload, STOW-RS, C-STORE).

Each series becomes a scan: per slice, its Hounsfield units as a 16-bit PNG (what the viewer's
window/level works on), the model's 8-bit input made with a window (the file's own, else the
configured default; the scan records which) and a thumbnail; the scan's DICOM header is kept
beside it. A whole upload is stored, with one queued prediction per scan, or nothing is."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import IO

import numpy as np
from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.storage import default_storage
from django.db import transaction
from PIL import Image

from audit import trail
from cases.events import STUDY_RECEIVED, publish
from cases.models import Patient, Prediction, Scan, Slice, Study
from cases.services.predictions import active_version, enqueue_on_commit
from cases.services.storage import file_save, files_delete
from cases.services.uploads import THUMBNAIL_SIZE, UploadError, display_name, scan_upload

from .archive import unpack_zip
from .pixels import hounsfield_from_png, hounsfield_png
from .reading import (
    DicomInstance,
    DicomRefused,
    DicomSeries,
    Failure,
    Refusal,
    RequestBudget,
    Source,
    is_dicom,
    model_window,
    read_series,
    windowed,
)

ZIP_MAGIC = b"PK\x03\x04"
HEAD_BYTES = 132  # a DICOM Part 10 file says "DICM" at 128


@dataclass(frozen=True)
class PreparedSlice:
    """One instance's files, made and stored before the transaction (decoding is the slow part),
    one instance at a time so that a study's pixels are never all in memory."""

    image: str
    image_sha256: str
    hounsfield: str
    hounsfield_sha256: str
    thumbnail: str
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


def upload_files(files: Sequence[IO[bytes]], *, budget: RequestBudget) -> list[tuple[str, Source]] | None:
    """The (name, file) of a DICOM upload (.dcm files, zips of them unpacked to temporary files),
    or None for JPEG/PNG slices; the bytes of every file and zip entry are counted together against
    the budget. A mix of both is refused: a study is one or the other."""
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
    unpacked: list[tuple[str, Source]] = []
    for upload in files:  # read when their turn comes (Django spools large uploads to disk)
        name = display_name(getattr(upload, "name", ""))
        if kinds[upload] == "zip":
            unpacked.extend(
                unpack_zip(
                    upload,
                    name=name,
                    max_files=settings.UPLOAD_MAX_FILES,
                    max_file_bytes=settings.UPLOAD_MAX_FILE_BYTES,
                    budget=budget,
                )
            )
        else:
            budget.take_bytes(name, _size(upload))
            unpacked.append((name, upload))
        if len(unpacked) > settings.UPLOAD_MAX_FILES:
            break
    if len(unpacked) > settings.UPLOAD_MAX_FILES:
        raise DicomRefused(
            f"{len(unpacked)} DICOM files were sent; at most {settings.UPLOAD_MAX_FILES} per upload."
        )
    return unpacked


def _size(upload: IO[bytes]) -> int:
    upload.seek(0, io.SEEK_END)
    size = upload.tell()
    upload.seek(0)
    return size


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
    priority: str | None = None,
    indication: str = "",
) -> list[Scan]:
    """An upload by hand: JPEG/PNG slices become one scan, DICOM files one scan per series.

    A series whose PatientID is not the chosen patient's MRN is refused unless the clinician
    confirms it is theirs (`confirm_patient`)."""
    try:
        budget = RequestBudget()
        dicom = upload_files(files, budget=budget)
        if dicom is None:
            return [
                scan_upload(
                    patient=patient,
                    files=files,
                    uploaded_by=uploaded_by,
                    study_date=study_date,
                    note=note,
                    priority=priority,
                    indication=indication,
                )
            ]
        series = read_series(dicom, max_slices=settings.UPLOAD_MAX_FILES, budget=budget)
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
    known = already_stored_sorted(patient.team_id, series)
    if known.conflicts:
        raise UploadError({"files": [known.conflicts[0].reason]})
    if not known.series:
        raise UploadError({"files": ["Every image of this upload is already stored; nothing new was added."]})
    return series_store(
        patient=patient,
        series=known.series,
        uploaded_by=uploaded_by,
        via=Scan.Received.UPLOAD,
        note=note,
        study_date=study_date,
        priority=priority,
        indication=indication,
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
    priority: str | None = None,
    indication: str = "",
) -> list[Scan]:
    """Store each series as a scan with its queued prediction, all in one transaction; files
    written for a refused or failed attempt are removed. A new study takes `priority` (else the
    header's) and `indication`; a study that exists keeps its own."""
    version = active_version()
    scans = [_scan(patient, item, uploaded_by, via, note, study_date) for item in series]
    for scan in scans:  # the study's own fields first: a wrong date is told before decoding
        scan.full_clean(exclude=["patient", "study", "uploaded_by"])
    stored: list[str] = []
    try:
        prepared = [[_prepared(instance, stored) for instance in item.instances] for item in series]
        with transaction.atomic():
            for scan, item, slices in zip(scans, series, prepared, strict=True):
                center, width, source = slices[0].window
                scan.window_center, scan.window_width, scan.window_source = center, width, source
                scan.study = _study(patient, item, scan, priority=priority, indication=indication)
                scan.save()
                Slice.objects.bulk_create(
                    [_slice(scan, position, prepared_slice) for position, prepared_slice in enumerate(slices)]
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
                publish(STUDY_RECEIVED, team=patient.team, subject=scan)  # via the outbox
    except BaseException:
        files_delete(stored)
        raise
    return scans


def _study(
    patient: Patient, item: DicomSeries, scan: Scan, *, priority: str | None, indication: str
) -> Study:
    """The patient's study of the series' StudyInstanceUID (a second series, or a resend, joins it),
    made from the series' header the first time."""
    study, _ = Study.objects.get_or_create(
        patient=patient,
        study_instance_uid=item.study_instance_uid,
        defaults={
            "accession_number": scan.accession_number,
            "study_date": scan.study_date,
            "study_time": item.study_time,
            "description": item.study_description[:64],
            "priority": priority or item.priority,
            "indication": indication,
        },
    )
    return study


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
        dicom_source_attributes=item.source_attributes,
    )


def _prepared(instance: DicomInstance, stored: list[str]) -> PreparedSlice:
    """Decode one instance and store its files (named in `stored`, removed by the caller if the
    study is not kept); its pixels go when this returns."""
    center, width, source = model_window(
        instance,
        default_center=settings.DICOM_DEFAULT_WINDOW_CENTER,
        default_width=settings.DICOM_DEFAULT_WINDOW_WIDTH,
    )
    hounsfield = instance.hounsfield
    grey = Image.fromarray(windowed(hounsfield, center, width), mode="L")
    buffer = io.BytesIO()
    grey.save(buffer, format="PNG")
    image_png = buffer.getvalue()
    grey.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    buffer = io.BytesIO()
    grey.save(buffer, format="PNG")
    thumbnail_png = buffer.getvalue()
    hounsfield_bytes = hounsfield_png(hounsfield)
    del hounsfield, grey
    for folder, data in (("slices", image_png), ("thumbs", thumbnail_png), ("hounsfield", hounsfield_bytes)):
        stored.append(file_save(folder, "png", data))
    return PreparedSlice(
        image=stored[-3],
        image_sha256=hashlib.sha256(image_png).hexdigest(),
        hounsfield=stored[-1],
        hounsfield_sha256=hashlib.sha256(hounsfield_bytes).hexdigest(),
        thumbnail=stored[-2],
        name=instance.name[:255],
        source_sha256=instance.source_sha256,
        size_bytes=instance.size_bytes,
        sop_instance_uid=instance.sop_instance_uid,
        sop_class_uid=instance.sop_class_uid,
        instance_number=instance.instance_number,
        location=instance.location,
        window=(center, width, source),
        width=instance.columns,
        height=instance.rows,
    )


def _slice(scan: Scan, position: int, item: PreparedSlice) -> Slice:
    return Slice(
        scan=scan,
        position=position,
        image=item.image,
        thumbnail=item.thumbnail,
        original_name=item.name,
        content_type="image/png",
        sha256=item.image_sha256,
        source_sha256=item.source_sha256,
        width=item.width,
        height=item.height,
        size_bytes=item.size_bytes,
        sop_instance_uid=item.sop_instance_uid,
        sop_class_uid=item.sop_class_uid,
        instance_number=item.instance_number,
        location=item.location,
        hounsfield=item.hounsfield,
        hounsfield_sha256=item.hounsfield_sha256,
    )


# --- instances already stored: acknowledged, never stored twice ---------------------------------


def stored_instances(team_id: int, uids: Iterable[str]) -> dict[str, Slice]:
    """The team's stored slices with these SOP Instance UIDs, by UID."""
    wanted = [uid for uid in set(uids) if uid]
    found = Slice.objects.filter(scan__patient__team_id=team_id, sop_instance_uid__in=wanted).select_related(
        "scan"
    )
    return {item.sop_instance_uid: item for item in found}


def instance_or_series_stored(team_id: int, sop_instance_uid: str, series_instance_uid: str) -> bool:
    """Whether the team holds this instance or any of this series (then a closer look is needed)."""
    return (
        Slice.objects.filter(scan__patient__team_id=team_id, sop_instance_uid=sop_instance_uid).exists()
        or Scan.objects.filter(patient__team_id=team_id, series_instance_uid=series_instance_uid).exists()
    )


def same_instance(instance: DicomInstance, series_uid: str, stored: Slice) -> bool:
    """Whether an instance sent again holds what is stored under its UID: the same series and
    Hounsfield pixels (the file's bytes differ between channels: file meta, transfer syntax)."""
    if stored.scan.series_instance_uid != series_uid or not stored.hounsfield:
        return False
    with default_storage.open(stored.hounsfield.name) as handle:
        kept = hounsfield_from_png(handle.read())
    return bool(np.array_equal(kept, instance.hounsfield))


@dataclass
class Sorted:
    """A delivery's series without what is already stored: `series` to store; `repeated` instances
    already stored as sent (acknowledged); `conflicts` sent again with other content (refused)."""

    series: list[DicomSeries]
    repeated: list[DicomInstance]
    conflicts: list[Refusal]


def already_stored_sorted(team_id: int, series: Sequence[DicomSeries]) -> Sorted:
    """Leave out instances the team already holds: the same content is acknowledged and not stored
    again; other content under a stored UID is a conflict, refused and recorded; new instances of a
    series that is already stored are refused too (a series is stored once, whole)."""
    known = stored_instances(team_id, (i.sop_instance_uid for s in series for i in s.instances))
    stored_series = set(
        Scan.objects.filter(
            patient__team_id=team_id, series_instance_uid__in=[s.series_instance_uid for s in series]
        ).values_list("series_instance_uid", flat=True)
    )
    result = Sorted([], [], [])
    for item in series:
        fresh = []
        for instance in item.instances:
            stored = known.get(instance.sop_instance_uid)
            if stored is not None and same_instance(instance, item.series_instance_uid, stored):
                result.repeated.append(instance)
            elif stored is not None:
                result.conflicts.append(_refusal(instance, CONFLICT.format(uid=instance.sop_instance_uid)))
            elif item.series_instance_uid in stored_series:
                result.conflicts.append(
                    _refusal(instance, MORE_OF_A_SERIES.format(uid=item.series_instance_uid))
                )
            else:
                fresh.append(instance)
        if fresh:
            result.series.append(replace(item, instances=tuple(fresh)))
    for conflict in result.conflicts:
        trail.record(
            trail.Action.UPLOAD,
            object_type="dicom_instance",
            outcome=trail.Outcome.REFUSED,
            detail=f"conflict: {conflict.reason}"[:500],
        )
    return result


CONFLICT = (
    "is already stored (SOP Instance UID {uid}) with other content; the stored image is kept. Send "
    "corrected images with new SOP Instance UIDs."
)
MORE_OF_A_SERIES = (
    "belongs to series {uid}, which is already stored; a series is stored once, whole. Send the "
    "missing images as a new series."
)


def _refusal(instance: DicomInstance, reason: str) -> Refusal:
    return Refusal(
        instance.name,
        f"{instance.name}: {reason}",
        Failure.DUPLICATE,
        instance.sop_class_uid,
        instance.sop_instance_uid,
    )
