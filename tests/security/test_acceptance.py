"""The issue's acceptance check in one flow through the API and the page: change a password and
replay the old token, upload a JPEG carrying EXIF identifiers and read it back, and try the
crafted truncation and polyglots."""

from django.urls import reverse
from rest_framework.test import APIClient

from tests import hostile
from tests.conftest import upload
from tests.factories import PASSWORD

from .test_upload_metadata import SECRETS, exif_jpeg

NEW_PASSWORD = "plum-orbit-kettle-91-saffron"


def test_old_token_replayed_exif_stripped_and_crafted_files_refused(client, alice, patient, settings):
    api = APIClient()
    old = api.post(reverse("api:token"), {"username": "alice", "password": PASSWORD}, format="json").json()
    api.credentials(HTTP_AUTHORIZATION=f"Token {old['token']}")
    assert api.get(reverse("api:patient-list")).status_code == 200

    client.force_login(alice)
    changed = client.post(
        reverse("password_change"),
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert changed.status_code == 302
    assert api.get(reverse("api:patient-list")).status_code == 401  # the old token is dead

    api = APIClient()
    fresh = api.post(reverse("api:token"), {"username": "alice", "password": NEW_PASSWORD}, format="json")
    api.credentials(HTTP_AUTHORIZATION=f"Token {fresh.json()['token']}")
    scans = reverse("api:patient-scans", args=[patient.pk])
    accepted = api.post(scans, {"files": [upload("exif.jpg", exif_jpeg(), "image/jpeg")]}, format="multipart")
    assert accepted.status_code == 202, accepted.json()
    slice_url = accepted.json()["scan"]["slices"][0]["file_url"]
    served = api.get(slice_url).getvalue()
    assert not [secret for secret in SECRETS if secret.encode() in served]

    crafted = {
        "truncated.jpg": (hostile.truncated_jpeg_with_eoi(), "image/jpeg"),
        "html-before-eoi.jpg": (hostile.jpeg_html_before_final_eoi(), "image/jpeg"),
        "fake-iend.png": (hostile.png_html_before_fake_iend(), "image/png"),
        "tiny.png": (hostile._png(size=(1, 1)), "image/png"),
    }
    for name, (data, content_type) in crafted.items():
        refused = api.post(scans, {"files": [upload(name, data, content_type)]}, format="multipart")
        assert refused.status_code == 400, (name, refused.json())
        assert name in " ".join(refused.json()["errors"]["files"])
    assert patient.scans.count() == 1  # only the clean upload was kept
