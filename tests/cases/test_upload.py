"""Uploading slices through the HTML form: good files are stored and queued, bad ones leave nothing."""

from pathlib import Path

import pytest
from django.urls import reverse

from cases.models import Prediction, Scan, Slice
from tests.conftest import image_bytes, upload


def stored_files(media_root: Path) -> list[Path]:
    return [p for p in Path(media_root).rglob("*") if p.is_file()]


def post_upload(client, patient, files, **extra):
    return client.post(
        reverse("cases:scan_upload", args=[patient.pk]),
        {"files": files, "study_date": "2026-11-20", "note": "follow-up", **extra},
        **({"HTTP_ACCEPT": "application/json"} if extra.pop("json", False) else {}),
    )


def test_upload_stores_slices_privately_and_queues_one_prediction(
    logged_in, patient, private_media, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        response = post_upload(
            logged_in,
            patient,
            [upload("first.png", image_bytes()), upload("../../etc/second.jpg", image_bytes("JPEG"))],
        )
    scan = Scan.objects.get()
    assert response.status_code == 302 and response["Location"] == scan.get_absolute_url()
    assert [s.original_name for s in scan.slices.all()] == ["first.png", "second.jpg"]
    # Stored as a lossless PNG of the decoded pixels (no metadata, no stray bytes) whatever came in.
    assert [s.content_type for s in scan.slices.all()] == ["image/png", "image/png"]
    prediction = scan.predictions.get()
    assert prediction.status == Prediction.Status.QUEUED and prediction.requested_by is not None
    assert prediction.requested_by.username == "alice"
    assert len(callbacks) == 2  # the task sent and the outbox event dispatched, once each, after the commit
    for item in scan.slices.all():
        assert "first" not in item.image.name and "second" not in item.image.name
        assert (Path(private_media) / item.image.name).read_bytes()[:4] in (b"\x89PNG", b"\xff\xd8\xff\xe0")
        assert len(item.sha256) == 64
    assert len(stored_files(private_media)) == 4  # two slices, two thumbnails


def test_type_is_decided_by_content_not_name(logged_in, patient):
    post_upload(logged_in, patient, [upload("scan.jpg", image_bytes("PNG"), "image/jpeg")])
    assert Slice.objects.get().content_type == "image/png"


BAD_FILES = [
    ("notes.png", b"this is not an image at all", "not a JPEG or PNG"),
    ("empty.png", b"", "empty"),
    ("truncated.png", image_bytes(size=(256, 256))[:200], "truncated"),
    ("script.jpg", b"<script>alert(1)</script>", "not a JPEG or PNG"),
]


@pytest.mark.parametrize("name,data,message", BAD_FILES)
def test_bad_file_is_refused_with_a_clear_message_and_nothing_is_stored(
    logged_in, patient, private_media, name, data, message
):
    response = post_upload(logged_in, patient, [upload("good.png", image_bytes()), upload(name, data)])
    assert response.status_code == 400
    body = response.content.decode()
    assert name in body and message.lower() in body.lower()
    assert not Scan.objects.exists() and not Slice.objects.exists() and not Prediction.objects.exists()
    assert stored_files(private_media) == []


def test_xhr_upload_errors_come_back_as_json(logged_in, patient):
    response = post_upload(logged_in, patient, [upload("empty.png", b"")], json=True)
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"detail", "errors"} and "nothing was stored" in body["detail"]
    messages = [m for errors in body["errors"].values() for m in errors]
    assert any("empty.png" in m for m in messages)


def test_xhr_upload_success_returns_the_scan_url(logged_in, patient):
    response = post_upload(logged_in, patient, [upload("ok.png", image_bytes())], json=True)
    assert response.status_code == 201
    assert response.json()["redirect"] == Scan.objects.get().get_absolute_url()


def test_upload_without_files_is_refused(logged_in, patient):
    response = post_upload(logged_in, patient, [])
    assert response.status_code == 400
    assert "Choose at least one CT slice" in response.content.decode()


def test_too_many_files_are_refused(logged_in, patient, settings, private_media):
    settings.UPLOAD_MAX_FILES = 2
    response = post_upload(logged_in, patient, [upload(f"{i}.png", image_bytes()) for i in range(3)])
    assert response.status_code == 400
    assert "at most 2" in response.content.decode()
    assert not Scan.objects.exists() and stored_files(private_media) == []


def test_oversized_image_dimensions_are_refused(logged_in, patient, settings):
    settings.UPLOAD_MAX_SIDE = 100
    response = post_upload(logged_in, patient, [upload("wide.png", image_bytes(size=(300, 40)))])
    assert response.status_code == 400 and "longest side" in response.content.decode()


def test_invalid_study_date_is_refused(logged_in, patient):
    response = post_upload(logged_in, patient, [upload("ok.png", image_bytes())], study_date="yesterday")
    assert response.status_code == 400 and not Scan.objects.exists()
