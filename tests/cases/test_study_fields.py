"""A study's priority and indication: set at upload (page and API), from DICOM's
RequestedProcedurePriority where the header has it, and shown on the study's page."""

from __future__ import annotations

from io import BytesIO

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from pydicom import dcmread
from rest_framework.test import APIClient

from cases.models import Study
from tests.conftest import image_bytes, upload
from tests.pacs.series import ct_series, dataset_slices


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_priority_and_indication_set_in_the_api_are_the_studys(alice, patient):
    response = api(alice).post(
        reverse("api:patient-scans", args=[patient.pk]),
        {"files": [upload("a.png", image_bytes())], "priority": "stat", "indication": "haemoptysis"},
        format="multipart",
    )

    assert response.status_code == 202, response.json()
    study = Study.objects.get()
    assert (study.priority, study.indication) == ("stat", "haemoptysis")
    assert response.json()["scan"]["study"] == study.pk


def test_an_unknown_priority_is_refused_and_nothing_is_stored(alice, patient):
    response = api(alice).post(
        reverse("api:patient-scans", args=[patient.pk]),
        {"files": [upload("a.png", image_bytes())], "priority": "whenever"},
        format="multipart",
    )

    assert response.status_code == 400 and "priority" in response.json()["errors"]
    assert not Study.objects.exists()


def test_the_upload_page_sets_the_priority_and_the_study_page_shows_it(logged_in, patient):
    response = logged_in.post(
        reverse("cases:scan_upload", args=[patient.pk]),
        {"files": [upload("a.png", image_bytes())], "priority": "urgent", "indication": "new nodule"},
    )

    study = Study.objects.get()
    assert response.status_code == 302 and study.priority == "urgent"
    page = logged_in.get(study.series.get().get_absolute_url()).content.decode()
    assert 'class="priority priority-urgent">Urgent</span>' in page and "Indication: new nodule" in page


@pytest.mark.parametrize(("header", "expected"), [("STAT", "stat"), ("HIGH", "urgent"), (None, "routine")])
def test_a_dicom_studys_priority_comes_from_its_header(alice, patient, header, expected):
    patient.mrn = "P-1"
    patient.save()
    files = ct_series(dataset_slices(1))
    if header:
        ds = dcmread(BytesIO(files[0][1]))
        ds.RequestedProcedurePriority = header
        buffer = BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        files = [(files[0][0], buffer.getvalue())]
    uploads = [SimpleUploadedFile(name, data, content_type="application/dicom") for name, data in files]

    response = api(alice).post(
        reverse("api:patient-scans", args=[patient.pk]),
        {"files": uploads, "confirm_patient": True},
        format="multipart",
    )

    assert response.status_code == 202, response.json()
    assert Study.objects.get().priority == expected
