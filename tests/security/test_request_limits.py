"""Issue 11, uploads: "a 300 MB file is read in full before the 20 MB limit refuses it". Bodies are
refused while being read: by their Content-Length before the first byte, and a multipart body as
soon as one file passes UPLOAD_MAX_FILE_BYTES. Each body here is generated as it is read, so the
tests see how much of it the portal took."""

import io
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse
from knox.models import AuthToken

from cases.models import Scan
from tests.conftest import image_bytes, upload

BOUNDARY = "lungportal-test-boundary"
MB = 1024 * 1024


class GeneratedBody(io.RawIOBase):
    """A multipart body with one file of `file_size` zero bytes, made as it is read; counts the bytes."""

    def __init__(self, file_size: int, name: str = "huge.png") -> None:
        self.head = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode() + b"\x89PNG\r\n\x1a\n"
        self.tail = f"\r\n--{BOUNDARY}--\r\n".encode()
        self.length = len(self.head) + file_size + len(self.tail)
        self.taken = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        size = self.length - self.taken if size is None or size < 0 else min(size, self.length - self.taken)
        start, self.taken = self.taken, self.taken + size
        filler_end = self.length - len(self.tail)
        return b"".join(
            (
                self.head[start : start + size],
                b"\x00" * max(0, min(start + size, filler_end) - max(start, len(self.head))),
                self.tail[max(0, start - filler_end) : max(0, start + size - filler_end)],
            )
        )


def post(client, url: str, body: GeneratedBody, *, declared: int | None = None, **extra):
    return client.generic(
        "POST",
        url,
        b"",
        CONTENT_TYPE=f"multipart/form-data; boundary={BOUNDARY}",
        CONTENT_LENGTH=str(body.length if declared is None else declared),
        **{"wsgi.input": body},
        **extra,
    )


@dataclass
class Sender:
    client: Client
    url: str
    extra: dict[str, str]
    json: bool

    def __call__(self, body: GeneratedBody, declared: int | None = None):
        return post(self.client, self.url, body, declared=declared, **self.extra)


@pytest.fixture(params=["api", "page-json", "page"])
def send(request, client, alice, patient) -> Sender:
    """Post a body to the API, to the upload page as its script does (JSON), or as a plain form."""
    if request.param == "api":
        token = AuthToken.objects.create(alice)[1]
        url = reverse("api:patient-scans", args=[patient.pk])
        return Sender(client, url, {"HTTP_AUTHORIZATION": f"Token {token}"}, json=True)
    client.force_login(alice)
    url = reverse("cases:scan_upload", args=[patient.pk])
    if request.param == "page-json":
        return Sender(client, url, {"HTTP_ACCEPT": "application/json"}, json=True)
    return Sender(client, url, {}, json=False)


def assert_refused_as_too_large(response, json: bool, *, naming: str = "") -> None:
    assert response.status_code == 413
    if json:
        body = response.json()
        assert body["detail"].startswith("The upload is too large") and "Nothing was stored" in body["detail"]
        assert naming in body["errors"]["files"][0]
    else:
        assert b"Nothing was stored" in response.content
    assert not Scan.objects.exists()


def test_a_body_declaring_more_than_the_cap_is_refused_before_it_is_read(send, settings, private_media):
    settings.UPLOAD_MAX_REQUEST_BYTES = 50 * MB
    body = GeneratedBody(300 * MB)
    assert_refused_as_too_large(send(body), send.json)
    assert body.taken == 0


def test_a_huge_declared_length_with_a_tiny_body_is_refused_unread(send):
    body = GeneratedBody(10)
    assert_refused_as_too_large(send(body, declared=2 * 1024**3), send.json)
    assert body.taken == 0


def test_reading_stops_as_soon_as_a_file_passes_the_file_limit(send, settings, private_media):
    settings.UPLOAD_MAX_FILE_BYTES = 1 * MB
    body = GeneratedBody(300 * MB)  # under the request cap: only the file limit can stop it
    assert body.length < settings.UPLOAD_MAX_REQUEST_BYTES
    assert_refused_as_too_large(
        send(body), send.json, naming="huge.png: the file is larger than the 1 MB limit"
    )
    assert body.taken < 2 * MB
    assert not [p for p in Path(private_media).rglob("*") if p.is_file()]


def test_the_file_limit_holds_where_csrf_checks_read_the_body_first(alice, patient, settings):
    settings.UPLOAD_MAX_FILE_BYTES = 1 * MB
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    browser.cookies["csrftoken"] = "a" * 32  # with a CSRF cookie, the middleware reads the form for its token
    body = GeneratedBody(300 * MB)
    response = post(
        browser, reverse("cases:scan_upload", args=[patient.pk]), body, HTTP_ACCEPT="application/json"
    )
    assert_refused_as_too_large(response, True, naming="huge.png")
    assert body.taken < 2 * MB


def test_the_default_cap_fits_a_full_upload_but_never_passes_one_gigabyte(settings):
    assert settings.UPLOAD_MAX_REQUEST_BYTES <= 1024**3
    assert settings.UPLOAD_MAX_REQUEST_BYTES >= min(settings.UPLOAD_MAX_FILE_BYTES * 40, 1024**3)


@pytest.mark.parametrize("memory_limit", [5 * MB, 1024])  # in memory, and spooled to a temporary file
def test_uploads_within_the_limits_still_pass_through_the_handlers(
    logged_in, patient, settings, memory_limit
):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = memory_limit
    settings.UPLOAD_MAX_FILE_BYTES = len(image_bytes(size=(300, 300)))
    response = logged_in.post(
        reverse("cases:scan_upload", args=[patient.pk]),
        {"files": [upload("a.png", image_bytes(size=(300, 300))), upload("b.png", image_bytes())]},
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 201
    assert Scan.objects.get().slices.count() == 2


def test_the_generated_body_is_a_well_formed_upload(send):
    # Under every limit, the same body reaches the content checks: the 413s above are the limits'.
    response = send(GeneratedBody(1000))
    assert response.status_code == 400
    assert b"huge.png" in response.content
