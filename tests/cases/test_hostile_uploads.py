"""The hostile corpus through both upload paths: a 4xx with a clear message naming the file,
no file and no row left behind, never a 500."""

from pathlib import Path

import pytest
from django.urls import reverse
from knox.models import AuthToken
from rest_framework.test import APIClient

from cases.models import Prediction, Scan, Slice
from tests.conftest import image_bytes, upload
from tests.hostile import corpus

MAX_FILE_BYTES = 200_000
CORPUS = corpus(MAX_FILE_BYTES)


def test_the_corpus_is_big_enough():
    assert len(CORPUS) >= 37


@pytest.fixture
def limits(settings):
    settings.UPLOAD_MAX_FILE_BYTES = MAX_FILE_BYTES
    settings.UPLOAD_MAX_PIXELS = 40_000_000
    settings.UPLOAD_MAX_SIDE = 8192


def send_html(client, patient, files):
    response = client.post(
        reverse("cases:scan_upload", args=[patient.pk]), {"files": files}, HTTP_ACCEPT="application/json"
    )
    messages = (
        [m for errors in response.json()["errors"].values() for m in errors]
        if response.status_code in (400, 413)
        else []
    )
    return response.status_code, messages


def send_api(client, patient, files):
    response = client.post(
        reverse("api:patient-scans", args=[patient.pk]), {"files": files}, format="multipart"
    )
    body = response.json()
    return response.status_code, [m for msgs in body.get("errors", {}).values() for m in msgs]


@pytest.fixture(params=["html", "api"])
def send(request, client, alice):
    if request.param == "html":
        client.force_login(alice)
        return lambda patient, files: send_html(client, patient, files)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {AuthToken.objects.create(alice)[1]}")
    return lambda patient, files: send_api(api, patient, files)


@pytest.mark.parametrize("name,data,reason", CORPUS, ids=[entry[0] for entry in CORPUS])
def test_hostile_file_is_refused_cleanly(send, patient, private_media, limits, name, data, reason):
    # A good slice rides along: one bad file must sink the whole upload, not half of it.
    status, messages = send(patient, [upload("good.png", image_bytes()), upload(name, data, "image/png")])
    # An oversized file stops the body being read (413); every other refusal is about content (400).
    assert status == (413 if reason == "larger than" else 400)
    shown = Path(name.replace("\\", "/")).name
    assert any(shown in m and reason in m.lower() for m in messages), messages
    assert not Scan.objects.exists() and not Slice.objects.exists() and not Prediction.objects.exists()
    assert not [p for p in Path(private_media).rglob("*") if p.is_file()]


@pytest.mark.parametrize("path", ["html", "api"])
def test_more_files_than_django_accepts_get_our_message(client, alice, patient, settings, path):
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 3  # Django's own guard, normally UPLOAD_MAX_FILES
    files = [upload(f"{i}.png", image_bytes()) for i in range(5)]
    if path == "html":
        client.force_login(alice)
        response = client.post(
            reverse("cases:scan_upload", args=[patient.pk]), {"files": files}, HTTP_ACCEPT="application/json"
        )
    else:
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Token {AuthToken.objects.create(alice)[1]}")
        response = api.post(
            reverse("api:patient-scans", args=[patient.pk]), {"files": files}, format="multipart"
        )
    assert response.status_code == 400
    assert "The upload is too large" in response.json()["errors"]["files"][0]
    assert not Scan.objects.exists()
