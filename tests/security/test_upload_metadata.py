"""Issue 11, uploads: EXIF, comments, text chunks and anything else the decoder does not use are not
kept. Each file is uploaded through the page or the API and read back through both file URLs."""

import io

import pytest
from django.urls import reverse
from knox.models import AuthToken
from PIL import Image, PngImagePlugin

from cases.models import Slice
from tests import hostile
from tests.conftest import upload

SECRETS = ["Jane Roe MRN 0012345", "Dr. Hidden Artist", "St. Elsewhere Hospital", "<script"]


def _exif() -> Image.Exif:
    exif = Image.Exif()
    exif[0x010E] = SECRETS[0]  # ImageDescription
    exif[0x013B] = SECRETS[1]  # Artist
    exif[0x8298] = SECRETS[2]  # Copyright
    return exif


def exif_jpeg() -> bytes:
    buffer = io.BytesIO()
    hostile.ct_like().save(buffer, format="JPEG", exif=_exif(), comment=hostile.HTML)
    return buffer.getvalue()


def png_with_text() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Description", SECRETS[0])  # tEXt
    info.add_text("Author", SECRETS[1], zip=True)  # zTXt
    info.add_itxt("Copyright", SECRETS[2], lang="en", tkey="Copyright")  # iTXt
    info.add(b"htMl", hostile.HTML)  # a private ancillary chunk carrying a page
    buffer = io.BytesIO()
    hostile.ct_like().save(buffer, format="PNG", pnginfo=info, exif=_exif())  # and an eXIf chunk
    return buffer.getvalue()


UPLOADS = {
    "exif.jpg": exif_jpeg,
    "text.png": png_with_text,
    "comment-polyglot.jpg": hostile.jpeg_html_in_comment,
}


def served(client, url: str, **headers) -> bytes:
    response = client.get(url, **headers)
    assert response.status_code == 200
    return b"".join(response.streaming_content)


@pytest.mark.parametrize("path", ["html", "api"])
@pytest.mark.parametrize("name", UPLOADS)
def test_identifying_text_is_not_stored_or_served(client, alice, patient, path, name):
    data = UPLOADS[name]()
    assert any(secret.encode() in data for secret in SECRETS)  # the attack carries it
    token = AuthToken.objects.create(alice)[1]
    if path == "html":
        client.force_login(alice)
        response = client.post(
            reverse("cases:scan_upload", args=[patient.pk]),
            {"files": [upload(name, data)]},
            HTTP_ACCEPT="application/json",
        )
    else:
        response = client.post(
            reverse("api:patient-scans", args=[patient.pk]),
            {"files": [upload(name, data)]},
            HTTP_AUTHORIZATION=f"Token {token}",
        )
    assert response.status_code in (201, 202), response.content  # page: 201, API: 202 (queued)
    item = Slice.objects.get()
    client.force_login(alice)
    for content in (
        served(client, reverse("cases:slice_image", args=[item.pk])),
        served(client, reverse("api:slice-file", args=[item.pk]), HTTP_AUTHORIZATION=f"Token {token}"),
    ):
        for secret in SECRETS:
            assert secret.encode() not in content
        with Image.open(io.BytesIO(content)) as image:
            assert image.format == "PNG"
            assert not image.getexif()
            assert not getattr(image, "text", {})
            assert not {"exif", "comment", "icc_profile", "xmp"} & set(image.info)
