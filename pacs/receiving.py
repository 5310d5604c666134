"""Studies sent by a PACS or router (STOW-RS, C-STORE): find each series' patient by its
PatientID within the sending team, or keep the series waiting for a clinician to say whose it is."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from audit import trail
from cases.models import CareTeam, Patient, Scan
from cases.services import patient_create
from cases.services.storage import files_delete

from .ingest import series_store
from .models import UnmatchedSeries
from .reading import DicomRefused, DicomSeries, read_series

INCOMING = "incoming"


@dataclass
class Received:
    scans: list[Scan] = field(default_factory=list)
    waiting: list[UnmatchedSeries] = field(default_factory=list)
    instances: list[tuple[str, str]] = field(default_factory=list)  # (SOP Class UID, SOP Instance UID)


def studies_receive(
    *,
    team: CareTeam,
    files: Sequence[tuple[str, bytes]],
    via: str,
    sender: str,
    user: User | None = None,
    study_instance_uid: str | None = None,
) -> Received:
    """Read the files (DicomRefused if any is refused: nothing is stored), then store each series
    under its patient, or keep it waiting with the reason. With `study_instance_uid`, every
    instance must belong to that study."""
    series = read_series(files, max_slices=settings.UPLOAD_MAX_FILES)
    strays = [
        s.series_instance_uid
        for s in series
        if study_instance_uid and s.study_instance_uid != study_instance_uid
    ]
    if strays:
        raise DicomRefused(f"Series {', '.join(strays)} belong to another study than {study_instance_uid}.")
    contents = dict(files)
    received = Received(
        instances=[(i.sop_class_uid, i.sop_instance_uid) for s in series for i in s.instances]
    )
    for item in series:
        patient, reason = patient_match(team, item, user=user)
        if patient is not None:
            received.scans += series_store(
                patient=patient, series=[item], uploaded_by=user, via=via, sender=sender
            )
        else:
            kept = [(i.name, contents[i.name]) for i in item.instances]
            received.waiting.append(_wait(team, item, kept, reason=reason, via=via, sender=sender))
    return received


def patient_match(
    team: CareTeam, series: DicomSeries, *, user: User | None = None
) -> tuple[Patient | None, str]:
    """The team's patient whose MRN is the series' PatientID, or None and why not. With
    DICOM_CREATE_PATIENTS, an unknown PatientID with a full header registers a new patient."""
    patient_id = series.patient_id.strip()
    if not patient_id:
        return None, UnmatchedSeries.Reason.UNKNOWN
    exact = list(Patient.objects.filter(team=team, mrn=patient_id)[:2])
    if len(exact) == 1:
        patient = exact[0]
        born = series.patient_birth_date
        if born is not None and born != patient.birth_date:
            return None, UnmatchedSeries.Reason.MISMATCH
        return patient, ""
    if Patient.objects.filter(team=team, mrn__iexact=patient_id).exists():
        return None, UnmatchedSeries.Reason.AMBIGUOUS  # "ab12" against "AB12": a person decides
    if settings.DICOM_CREATE_PATIENTS and series.patient_name and series.patient_birth_date:
        try:
            return patient_create(
                team=team,
                mrn=patient_id,
                name=series.patient_name,
                birth_date=series.patient_birth_date,
                sex=_sex(series.patient_sex),
                created_by=user,
            ), ""
        except ValidationError:  # an implausible header: let a clinician look
            return None, UnmatchedSeries.Reason.UNKNOWN
    return None, UnmatchedSeries.Reason.UNKNOWN


def _wait(
    team: CareTeam, series: DicomSeries, files: list[tuple[str, bytes]], *, reason: str, via: str, sender: str
) -> UnmatchedSeries:
    folder = f"{INCOMING}/{timezone.now():%Y/%m}/{uuid.uuid4().hex}"
    written: list[str] = []
    try:
        for number, (_, data) in enumerate(files):
            written.append(default_storage.save(f"{folder}/{number:05d}.dcm", ContentFile(data)))
        with transaction.atomic():
            waiting = UnmatchedSeries.objects.create(
                team=team,
                reason=reason,
                received_via=via,
                sender=sender[:200],
                dicom_patient_id=series.patient_id[:64],
                dicom_patient_name=series.patient_name[:200],
                dicom_birth_date=series.patient_birth_date,
                dicom_sex=series.patient_sex[:16],
                study_instance_uid=series.study_instance_uid,
                series_instance_uid=series.series_instance_uid,
                study_date=series.study_date,
                instances=len(files),
                folder=folder,
            )
            trail.record(
                trail.Action.UPLOAD,
                object_type="unmatched_series",
                object_id=waiting.pk,
                detail=f"DICOM series {series.series_instance_uid} waits for a patient "
                f"({waiting.get_reason_display()}); from {sender or 'unknown sender'}",
            )
    except BaseException:
        files_delete(written)
        raise
    return waiting


def waiting_files(waiting: UnmatchedSeries) -> list[tuple[str, bytes]]:
    _, names = default_storage.listdir(waiting.folder)
    files = []
    for name in sorted(names):
        with default_storage.open(f"{waiting.folder}/{name}") as handle:
            files.append((name, handle.read()))
    return files


def unmatched_resolve(
    waiting: UnmatchedSeries, *, user: User, patient: Patient | None = None, register: bool = False
) -> list[Scan]:
    """A clinician says whose series this is (one of the team's patients, or a new patient from
    the header): it is stored and classified like any other, and the waiting files go."""
    if waiting.is_resolved:
        raise ValidationError("This series has been resolved already.")
    if (patient is None) == (not register):
        raise ValidationError("Choose the patient, or register a new one from the series' header.")
    if patient is not None and patient.team_id != waiting.team_id:
        raise ValidationError("Choose a patient of the series' care team.")
    series = read_series(waiting_files(waiting), max_slices=settings.UPLOAD_MAX_FILES)
    with transaction.atomic():
        claimed = UnmatchedSeries.objects.select_for_update().get(pk=waiting.pk)
        if claimed.is_resolved:
            raise ValidationError("This series has just been resolved by someone else.")
        if register:
            patient = patient_create(
                team=waiting.team,
                mrn=waiting.dicom_patient_id,
                name=waiting.dicom_patient_name,
                birth_date=waiting.dicom_birth_date,  # type: ignore[arg-type]  # checked by full_clean
                sex=_sex(waiting.dicom_sex),
                created_by=user,
            )
        assert patient is not None
        scans = series_store(patient=patient, series=series, uploaded_by=user, via=waiting.received_via)
        claimed.resolved_at, claimed.resolved_by = timezone.now(), user
        claimed.patient, claimed.scan = patient, scans[0]
        claimed.save(update_fields=["resolved_at", "resolved_by", "patient", "scan"])
        trail.record_object(
            trail.Action.CHANGE,
            scans[0],
            user=user,
            detail=f"unmatched DICOM series {waiting.series_instance_uid} assigned to patient {patient.pk}",
        )
        folder = waiting.folder
        transaction.on_commit(lambda: _folder_delete(folder))
    return scans


def _folder_delete(folder: str) -> None:
    _, names = default_storage.listdir(folder)
    files_delete(f"{folder}/{name}" for name in names)


def _sex(value: str) -> str:
    """A DICOM PatientSex as the record holds it (F, M, O; anything else unknown)."""
    return value if value in Patient.Sex.values else Patient.Sex.UNKNOWN
