"""The issue's acceptance check, end to end through the API: a clinician reads a patient, a scan
and a slice file and reviews a prediction; an admin finds each in /api/v1/audit/."""

from django.urls import reverse
from rest_framework.test import APIClient

from tests.factories import PASSWORD


def _token_client(username: str) -> APIClient:
    client = APIClient()
    token = client.post(reverse("api:token"), {"username": username, "password": PASSWORD}, format="json")
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.json()['token']}")
    return client


def test_reads_and_a_review_are_found_in_the_audit_api_by_an_admin_only(alice, admin_user, objects):
    patient, scan, prediction = objects["patient"], objects["scan"], objects["prediction"]
    slice_ = objects["slice"]
    clinician = _token_client("alice")
    assert clinician.get(reverse("api:patient-detail", args=[patient.pk])).status_code == 200
    assert clinician.get(reverse("api:scan-detail", args=[scan.pk])).status_code == 200
    assert clinician.get(reverse("api:slice-file", args=[slice_.pk])).status_code == 200
    review = clinician.post(
        reverse("api:prediction-reviews", args=[prediction.pk]), {"verdict": "agree"}, format="json"
    )
    assert review.status_code == 201

    assert clinician.get(reverse("api:audit")).status_code == 403
    admin = _token_client("admin")
    found = admin.get(reverse("api:audit"), {"patient": patient.pk, "username": "alice"}).json()["results"]
    seen = {(e["action"], e["object_type"], e["object_id"]) for e in found}
    assert {
        ("read", "patient", patient.pk),
        ("read", "scan", scan.pk),
        ("read", "slice", slice_.pk),
        ("review", "review", review.json()["id"]),
    } <= seen
    through_api = [e for e in found if e["action"] in ("read", "review")]
    assert all(e["channel"] == "api" and e["client_address"] == "127.0.0.1" for e in through_api)
    logins = admin.get(reverse("api:audit"), {"action": "login", "username": "alice"}).json()
    assert logins["count"] == 1
