"""Issue 15's acceptance check, end to end with a real worker: an admin registers a webhook, a
clinician uploads a study through the API, the worker classifies it and delivers the signed
events, and the prediction's link leads to a DiagnosticReport that names the patient's MRN."""

from __future__ import annotations

import pytest
from django.conf import settings

from tests.conftest import upload, wait_for

from .test_admin_api import api_as

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_register_upload_receive_and_follow_the_link_to_the_report(
    worker, admin_user, alice, patient, team_a, receiver, local_hosts, dataset_dir
):
    registered = api_as(admin_user).post(
        "/api/v1/webhooks/",
        {"team": team_a.pk, "url": receiver.url, "events": ["study.received", "prediction.succeeded"]},
    )
    assert registered.status_code == 201
    receiver.secret = registered.json()["secret"]
    clinician = api_as(alice)
    slice_bytes = (dataset_dir / "malignant" / "Malignant case (1).jpg").read_bytes()
    uploaded = clinician.post(
        f"/api/v1/patients/{patient.pk}/scans/",
        {"files": [upload("a.jpg", slice_bytes, "image/jpeg")]},
        format="multipart",
    )
    assert uploaded.status_code == 202

    def both_arrived() -> bool:
        return {p["type"] for p in receiver.events.values()} == {"study.received", "prediction.succeeded"}

    wait_for(both_arrived, timeout=120, message=f"events received: {list(receiver.events.values())}")
    assert receiver.rejected == []  # every request carried a valid signature
    report = next(p for p in receiver.events.values() if p["type"] == "prediction.succeeded")
    assert report["data"]["prediction"]["id"] == uploaded.json()["prediction"]["id"]
    link = report["data"]["prediction"]["fhir"]
    assert link.startswith(settings.PORTAL_BASE_URL)
    followed = clinician.get(link.removeprefix(settings.PORTAL_BASE_URL), HTTP_ACCEPT="application/fhir+json")
    assert followed.status_code == 200 and followed.json()["resourceType"] == "DiagnosticReport"
    assert patient.mrn in followed.content.decode()
