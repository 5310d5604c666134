"""Registering patients and correcting their details."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

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
    return _patient_save(patient)


def patient_update(*, patient: Patient, **fields: Any) -> Patient:
    unknown = set(fields) - UPDATABLE_FIELDS
    if unknown:
        raise ValueError(f"cannot update {sorted(unknown)}")
    for field, value in fields.items():
        setattr(patient, field, value.strip() if isinstance(value, str) else value)
    return _patient_save(patient)


def _patient_save(patient: Patient) -> Patient:
    patient.full_clean()
    try:
        with transaction.atomic():
            patient.save()
    except IntegrityError:  # a simultaneous request took the MRN between the check and the save
        raise ValidationError(
            {"mrn": ["A patient with this MRN already exists in this care team."]}
        ) from None
    return patient
