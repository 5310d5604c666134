"""A DICOM study of several series for the FHIR tests, through the real DICOM upload."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import TestCase
from pydicom.uid import generate_uid

from cases.models import Scan
from pacs.ingest import study_upload
from pacs.synthetic import ct_series


def dicom_study(
    patient: Any,  # a factory-made Patient is typed as its factory
    user: Any,
    *,
    sizes: Sequence[int] = (3, 2),
    study_uid: str | None = None,
    accession: str = "A-78",
    study_date: str = "20261102",
) -> list[Scan]:
    """One DICOM study of len(sizes) series (numbered 2, 3, …, with sizes[i] instances each),
    uploaded together; its scans in series order."""
    study_uid = study_uid or generate_uid()
    files = [
        (f"{number}-{name}", data)
        for number, size in enumerate(sizes, start=2)
        for name, data in ct_series(
            [np.full((64, 64), 30 * i, dtype=np.uint8) for i in range(size)],
            study_uid=study_uid,
            patient_id=patient.mrn,
            accession=accession,
            study_date=study_date,
            series_number=number,
            series_description=f"CHEST SERIES {number}",
        )
    ]
    uploads = [SimpleUploadedFile(name, data, content_type="application/dicom") for name, data in files]
    with TestCase.captureOnCommitCallbacks(execute=False):
        scans = study_upload(patient=patient, files=uploads, uploaded_by=user)
    return sorted(scans, key=lambda scan: scan.series_number or 0)
