"""The issue's acceptance check: a suspicious and an unsuspicious study uploaded through the API
are classified by a real worker; the suspicious one tops /api/v1/worklist/, and its report opens."""

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from tests.conftest import wait_for
from tests.factories import PASSWORD

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def upload(client, patient_id, dataset_dir, folder, prefix):
    files = [open(dataset_dir / folder / f"{prefix} case ({n}).jpg", "rb") for n in (1, 2, 3)]
    try:
        response = client.post(
            reverse("api:patient-scans", args=[patient_id]),
            {"files": files, "study_date": "2026-11-20"},
            format="multipart",
        )
    finally:
        for handle in files:
            handle.close()
    assert response.status_code == 202, response.json()
    return response.json()["scan"]["id"]


def test_the_suspicious_study_comes_first_and_its_report_opens(worker, alice, dataset_dir):
    api = APIClient()
    token = api.post(reverse("api:token"), {"username": "alice", "password": PASSWORD}, format="json")
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.json()['token']}")
    patient = api.post(
        reverse("api:patient-list"),
        {"mrn": "ACC-12", "name": "Ada Reader", "birth_date": "1950-02-03", "sex": "F"},
        format="json",
    ).json()["id"]
    calm = upload(api, patient, dataset_dir, "normal", "Normal")
    suspicious = upload(api, patient, dataset_dir, "malignant", "Malignant")

    def finished():
        items = api.get(reverse("api:worklist")).json()["results"]
        return len(items) == 2 and all(item["state"] == "succeeded" for item in items)

    wait_for(finished, timeout=180, message="both studies classified")
    items = api.get(reverse("api:worklist")).json()["results"]
    assert [item["scan"] for item in items] == [suspicious, calm]
    assert items[0]["suspicion"] > items[1]["suspicion"] and items[0]["ai_label"] == "malignant"
    assert all(item["reading"] == "unread" for item in items)

    page = Client()
    page.force_login(alice)
    report = page.get(items[0]["report_url"])
    body = report.content.decode()
    assert report.status_code == 200 and "ACC-12" in body and "Ada Reader" in body
    assert "Preliminary: no clinician has signed" in body and body.count("<figure>") == 3
