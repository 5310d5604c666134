"""Studies sent by a PACS or router (STOW-RS, C-STORE): find each series' patient by its
PatientID within the sending team, or keep the series waiting for a clinician to say whose it is."""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO

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

from .ingest import already_stored_sorted, series_store
from .models import UnmatchedSeries
from .reading import (
    DicomRefused,
    DicomSeries,
    Failure,
    Refusal,
    RequestBudget,
    Source,
    read_series,
    source_bytes,
)

INCOMING = "incoming"


@dataclass
class Received:
    scans: list[Scan] = field(default_factory=list)
    waiting: list[UnmatchedSeries] = field(default_factory=list)
    instances: list[tuple[str, str]] = field(default_factory=list)  # (SOP Class UID, SOP Instance UID)
    refused: list[Refusal] = field(default_factory=list)  # left out of a partial delivery, and why


def studies_receive(
    *,
    team: CareTeam,
    files: Sequence[tuple[str, Source]],
    via: str,
    sender: str,
    user: User | None = None,
    study_instance_uid: str | None = None,
    budget: RequestBudget | None = None,
    partial: bool = False,
) -> Received:
    """Read the files, then store each series under its patient, or keep it waiting with the
    reason. Any refused file refuses them all (DicomRefused: nothing is stored), unless `partial`:
    then refused files are left out and listed in `refused`, and the rest is stored (what a PACS
    expects: PS3.18 partial success, a C-STORE status per instance). With `study_instance_uid`,
    every instance must belong to that study."""
    refused: list[Refusal] | None = [] if partial else None
    series = read_series(files, max_slices=settings.UPLOAD_MAX_FILES, budget=budget, refused=refused)
    received = Received(refused=refused or [])
    if study_instance_uid:
        strays = [s for s in series if s.study_instance_uid != study_instance_uid]
        if strays and not partial:
            uids = ", ".join(s.series_instance_uid for s in strays)
            raise DicomRefused(f"Series {uids} belong to another study than {study_instance_uid}.")
        received.refused += [
            Refusal(
                i.name,
                f"{i.name}: belongs to study {s.study_instance_uid}, not {study_instance_uid} named in the "
                "request; send it to its own study.",
                Failure.NOT_THIS_SOP_CLASS,
                i.sop_class_uid,
                i.sop_instance_uid,
            )
            for s in strays
            for i in s.instances
        ]
        series = [s for s in series if s.study_instance_uid == study_instance_uid]
    known = already_stored_sorted(team.pk, series)
    if known.conflicts and not partial:
        raise DicomRefused(known.conflicts[0].reason, failure=Failure.DUPLICATE)
    received.refused += known.conflicts
    received.instances = [(i.sop_class_uid, i.sop_instance_uid) for i in known.repeated]  # acknowledged
    return series_receive(
        team=team, series=known.series, via=via, sender=sender, user=user, received=received
    )


def series_receive(
    *,
    team: CareTeam,
    series: Sequence[DicomSeries],
    via: str,
    sender: str,
    user: User | None = None,
    received: Received | None = None,
) -> Received:
    """Store each series (already read and checked) under its patient, or keep it waiting with the
    reason: nothing that can refuse a file happens here, so a sender told "stored" is right."""
    received = received if received is not None else Received()
    received.instances += [(i.sop_class_uid, i.sop_instance_uid) for s in series for i in s.instances]
    for item in series:
        patient, reason = patient_match(team, item, user=user)
        if patient is not None:
            try:
                received.scans += series_store(
                    patient=patient, series=[item], uploaded_by=user, via=via, sender=sender
                )
                continue
            except ValidationError as invalid:  # e.g. a study date before the patient's birth
                reason = Why(UnmatchedSeries.Reason.MISMATCH, " ".join(invalid.messages))
        kept = [(i.name, i.source) for i in item.instances]
        received.waiting.append(_wait(team, item, kept, reason=reason, via=via, sender=sender))
    return received


@dataclass(frozen=True)
class Why:
    """Why a series waits: an UnmatchedSeries.Reason and a sentence saying exactly what disagreed
    (the team's clinicians read it; it names header values and the MRN, never the sender)."""

    reason: str = ""
    detail: str = ""


MATCHED = Why()


def patient_match(
    team: CareTeam, series: DicomSeries, *, user: User | None = None
) -> tuple[Patient | None, Why]:
    """The team's patient whose MRN is the series' PatientID and whose birth date and name the
    header confirms, or None and why not: anything missing or uncertain waits for a person. With
    DICOM_CREATE_PATIENTS, an unknown PatientID with a full header registers a new patient. Only
    `team`'s patients are looked at: another team's patient with the same MRN is never chosen."""
    patient_id = series.patient_id.strip()
    if not patient_id:
        return None, Why(UnmatchedSeries.Reason.UNKNOWN, "The header has no PatientID.")
    exact = list(Patient.objects.filter(team=team, mrn=patient_id)[:2])
    if len(exact) == 1:
        return _confirmed(exact[0], series)
    if len(exact) > 1:  # the database should not allow it; if it does, a person decides
        return None, Why(
            UnmatchedSeries.Reason.AMBIGUOUS, f"More than one patient of the team has MRN {patient_id}."
        )
    if Patient.objects.filter(team=team, mrn__iexact=patient_id).exists():
        # "ab12" against "AB12": a person decides
        return None, Why(
            UnmatchedSeries.Reason.AMBIGUOUS,
            f"PatientID {patient_id} matches a patient's MRN of the team only in another letter case.",
        )
    unknown = Why(UnmatchedSeries.Reason.UNKNOWN, f"No patient of the team has MRN {patient_id}.")
    if settings.DICOM_CREATE_PATIENTS and series.patient_name and series.patient_birth_date:
        try:
            return patient_create(
                team=team,
                mrn=patient_id,
                name=series.patient_name,
                birth_date=series.patient_birth_date,
                sex=_sex(series.patient_sex),
                created_by=user,
            ), MATCHED
        except ValidationError as invalid:  # an implausible header: let a clinician look
            return None, Why(
                unknown.reason,
                f"{unknown.detail} Its header could not register one: {' '.join(invalid.messages)}",
            )
    return None, unknown


def _confirmed(patient: Patient, series: DicomSeries) -> tuple[Patient | None, Why]:
    """The patient with the series' MRN, if the header's birth date and name agree with the
    record; every disagreement is said, the first giving the reason."""
    mrn = patient.mrn
    problems: list[Why] = []
    born = series.patient_birth_date
    if born is None:
        problems.append(
            Why(
                UnmatchedSeries.Reason.NO_BIRTH_DATE,
                f"The header has no PatientBirthDate to confirm MRN {mrn}.",
            )
        )
    elif born != patient.birth_date:
        problems.append(
            Why(
                UnmatchedSeries.Reason.OTHER_BIRTH_DATE,
                f"PatientBirthDate {born:%Y-%m-%d} differs from the birth date of the patient "
                f"with MRN {mrn}.",
            )
        )
    if not name_words(series.patient_name):
        problems.append(
            Why(UnmatchedSeries.Reason.NO_NAME, f"The header has no PatientName to confirm MRN {mrn}.")
        )
    elif name_words(series.patient_name) != name_words(patient.name):
        problems.append(
            Why(
                UnmatchedSeries.Reason.OTHER_NAME,
                f"PatientName '{series.patient_name}' does not match the patient's name for MRN {mrn}.",
            )
        )
    if problems:
        return None, Why(problems[0].reason, " ".join(problem.detail for problem in problems))
    return patient, MATCHED


def name_words(name: str) -> list[str]:
    """A person's name as words to compare, whatever their order, case, accents or punctuation:
    "Interop^Carol", "INTEROP^CAROL^^^", "Carol Interop" and "Carol  Intérop" agree; "Carol Anne
    Interop" does not (a middle name one side lacks is uncertain: it waits). Splits on spaces and
    on PN's "^" (and "=", should a reading keep the ideographic groups: they then disagree)."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))
    words = ("".join(c for c in word if c.isalnum()) for word in re.split(r"[\s^=,-]+", plain.casefold()))
    return sorted(word for word in words if word)


def _wait(
    team: CareTeam,
    series: DicomSeries,
    files: list[tuple[str, Source]],
    *,
    reason: Why,
    via: str,
    sender: str,
) -> UnmatchedSeries:
    folder = f"{INCOMING}/{timezone.now():%Y/%m}/{uuid.uuid4().hex}"
    written: list[str] = []
    try:
        for number, (_, data) in enumerate(files):
            written.append(
                default_storage.save(f"{folder}/{number:05d}.dcm", ContentFile(source_bytes(data)))
            )
        with transaction.atomic():
            waiting = UnmatchedSeries.objects.create(
                team=team,
                reason=reason.reason,
                detail=reason.detail,
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


def waiting_files(waiting: UnmatchedSeries) -> list[tuple[str, IO[bytes]]]:
    """The waiting series' files, open (each is read when its turn comes, never all at once)."""
    _, names = default_storage.listdir(waiting.folder)
    return [(name, default_storage.open(f"{waiting.folder}/{name}")) for name in sorted(names)]


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
