"""Registering patients and correcting their details."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from audit import trail

from ..models import CareTeam, Patient

UPDATABLE_FIELDS = frozenset({"team", "mrn", "name", "birth_date", "sex"})


def patient_create(
    *,
    team: CareTeam,
    mrn: str,
    name: str,
    birth_date: date,
    sex: str = Patient.Sex.UNKNOWN,
    created_by: User | None,
) -> Patient:
    patient = Patient(team=team, mrn=mrn.strip(), name=name.strip(), birth_date=birth_date, sex=sex)
    patient.created_by = created_by
    patient.full_clean()
    return _patient_save(patient, user=created_by)


def patient_update(*, patient: Patient, updated_by: User | None, **fields: Any) -> Patient:
    """Correct a patient's details; the trail keeps each changed field's value before and after.
    A change of care team is recorded as a team move."""
    unknown = set(fields) - UPDATABLE_FIELDS
    if unknown:
        raise ValueError(f"cannot update {sorted(unknown)}")
    for field, value in fields.items():
        setattr(patient, field, value.strip() if isinstance(value, str) else value)
    patient.full_clean()
    return _patient_save(patient, user=updated_by)


def _details(patient: Patient | None) -> dict[str, Any]:
    return {name: getattr(patient, name) for name in sorted(UPDATABLE_FIELDS)} if patient else {}


def _patient_save(patient: Patient, *, user: User | None) -> Patient:
    try:
        with transaction.atomic():
            # "Before" from the stored row: a bound ModelForm has already changed the instance.
            stored = Patient.objects.select_for_update().filter(pk=patient.pk).first() if patient.pk else None
            before = _details(stored)
            patient.save()
            changes = trail.changes_between(before, _details(patient))
            if stored is None:
                trail.record_object(trail.Action.CREATE, patient, changes=changes, user=user)
            elif changes:
                moved = "team" in changes
                action = trail.Action.TEAM_MOVE if moved else trail.Action.CHANGE
                trail.record_object(action, patient, changes=changes, user=user)
    except IntegrityError:  # a simultaneous request took the MRN between the check and the save
        raise ValidationError(
            {"mrn": ["A patient with this MRN already exists in this care team."]}
        ) from None
    return patient
