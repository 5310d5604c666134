"""A slice's stored file must be the file uploaded: checked whenever it is served or classified."""

from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse
from knox.models import AuthToken
from rest_framework.test import APIClient

from audit.models import AuditEntry
from cases import services
from cases.files import TAMPERED_MESSAGE
from cases.models import Prediction
from cases.services import prediction_runs


def tamper(item) -> None:
    """Someone with disk access changes one byte of a stored slice."""
    path = Path(settings.MEDIA_ROOT) / item.image.name
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {AuthToken.objects.create(user)[1]}")
    return client


@pytest.fixture
def first_slice(scan):
    return scan.slices.select_related("scan").get(position=0)


def page_url(item) -> str:
    return reverse("cases:slice_image", args=[item.pk])


def api_url(item) -> str:
    return f"/api/v1/slices/{item.pk}/file/"


def integrity_entries():
    return list(AuditEntry.objects.filter(action="integrity"))


@pytest.mark.parametrize("url", [page_url, api_url])
def test_untampered_slice_is_served_with_its_bytes(client, alice, first_slice, url):
    client.force_login(alice)
    response = client.get(url(first_slice))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == first_slice.image.open("rb").read()
    assert response["Content-Type"] == "image/png"
    assert response["Content-Disposition"] == f'inline; filename="slice-{first_slice.pk}.png"'
    assert "no-store" in response["Cache-Control"]
    assert response["X-Content-Type-Options"] == "nosniff"
    assert not integrity_entries()
    assert AuditEntry.objects.filter(action="read", object_type="slice", object_id=first_slice.pk).exists()


@pytest.mark.parametrize(("url", "channel"), [(page_url, "page"), (api_url, "api")])
def test_tampered_slice_is_refused_with_409_and_an_audit_entry(
    client, alice, patient, first_slice, url, channel
):
    tamper(first_slice)
    client.force_login(alice)
    response = client.get(url(first_slice))

    assert response.status_code == 409
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": TAMPERED_MESSAGE, "errors": {}}
    [entry] = integrity_entries()
    assert (entry.user, entry.channel, entry.outcome) == (alice, channel, "failed")
    assert (entry.object_type, entry.object_id, entry.patient_id) == ("slice", first_slice.pk, patient.pk)
    assert first_slice.sha256[:12] in entry.detail and "recorded at upload" in entry.detail
    # Nothing was shown, so nothing is recorded as read.
    assert not AuditEntry.objects.filter(action="read", object_type="slice").exists()


def test_tampered_slice_is_refused_to_a_token_client(alice, first_slice):
    tamper(first_slice)
    response = token_client(alice).get(api_url(first_slice), HTTP_ACCEPT="image/*")
    assert response.status_code == 409
    assert response.json()["detail"] == TAMPERED_MESSAGE
    assert b"\x89PNG" not in response.content
    [entry] = integrity_entries()
    assert (entry.user, entry.channel) == (alice, "api")


def test_tampered_slice_is_still_404_for_an_outsider(client, charlie, first_slice):
    tamper(first_slice)
    client.force_login(charlie)
    assert client.get(page_url(first_slice)).status_code == 404
    assert token_client(charlie).get(api_url(first_slice)).status_code == 404
    assert not integrity_entries()


def test_missing_slice_file_is_still_404(client, alice, first_slice):
    (Path(settings.MEDIA_ROOT) / first_slice.image.name).unlink()
    client.force_login(alice)
    assert client.get(page_url(first_slice)).status_code == 404
    assert token_client(alice).get(api_url(first_slice)).status_code == 404
    assert not integrity_entries()


class SetsEverySliceAside:
    """Stands in for the CNN: the check under test comes before any classification."""

    image_size = 64

    def not_assessable_reason(self, found) -> str:
        return "set aside by the stand-in predictor"


def test_inference_on_a_tampered_slice_fails_permanently_with_the_reason(prediction, patient, monkeypatch):
    monkeypatch.setattr(prediction_runs, "model_version_predictor", lambda version: SetsEverySliceAside())
    second = prediction.scan.slices.get(position=1)
    tamper(second)

    services.prediction_execute(prediction_id=prediction.pk, task_id="task-a")  # no retry is raised

    failed = Prediction.objects.get(pk=prediction.pk)
    assert failed.status == Prediction.Status.FAILED and failed.attempts == 1
    assert "Slice 2 (b.jpg) no longer matches the checksum recorded at upload" in failed.error
    assert not failed.slice_results.exists()
    [entry] = integrity_entries()
    assert (entry.user, entry.channel, entry.outcome) == (None, "system", "failed")
    assert (entry.object_type, entry.object_id, entry.patient_id) == ("slice", second.pk, patient.pk)
    # A redelivered message finds nothing to claim: the failure is final.
    services.prediction_execute(prediction_id=prediction.pk, task_id="task-a")
    assert Prediction.objects.get(pk=prediction.pk).attempts == 1
    assert len(integrity_entries()) == 1
