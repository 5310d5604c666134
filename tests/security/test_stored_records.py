"""Records stored before the upload rules changed are brought up to them by one command."""

import io

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.urls import reverse
from PIL import Image

from audit.models import AuditEntry
from cases.models import Prediction, Slice

from .test_upload_metadata import SECRETS, exif_jpeg


def _legacy_slice(scan) -> Slice:
    """A slice as the portal stored it before: the uploaded JPEG itself, EXIF and all."""
    import hashlib

    data = exif_jpeg()
    item = scan.slices.first()
    name = default_storage.save("slices/legacy.jpg", ContentFile(data))
    Slice.objects.filter(pk=item.pk).update(
        image=name, content_type="image/jpeg", sha256=hashlib.sha256(data).hexdigest(), source_sha256=""
    )
    return Slice.objects.get(pk=item.pk)


def test_legacy_slices_and_reasons_are_restored_only_with_apply(
    client, alice, scan, prediction, django_capture_on_commit_callbacks
):
    legacy = _legacy_slice(scan)
    Prediction.objects.filter(pk=prediction.pk).update(
        status="failed",
        error="Slice 1 could not be read: [Errno 2] No such file: '/srv/portal/var/media/x.jpg'",
    )
    out = io.StringIO()
    call_command("restore_stored_records", stdout=out)
    assert "1 slice(s) would be stored again" in out.getvalue() and "1 failure reason(s)" in out.getvalue()
    assert Slice.objects.get(pk=legacy.pk).source_sha256 == ""

    with django_capture_on_commit_callbacks(execute=True):  # the old file goes after the commit
        call_command("restore_stored_records", "--apply", stdout=io.StringIO())
    restored = Slice.objects.get(pk=legacy.pk)
    assert (restored.content_type, restored.source_sha256) == ("image/png", legacy.sha256)
    assert restored.sha256 != legacy.sha256 and not default_storage.exists(legacy.image.name)
    assert "/srv/portal" not in Prediction.objects.get(pk=prediction.pk).error
    assert AuditEntry.objects.filter(action="change", object_type="slice", object_id=legacy.pk).exists()

    client.force_login(alice)
    served = client.get(reverse("cases:slice_image", args=[legacy.pk]))
    assert served.status_code == 200  # the new hash matches the new copy
    data = b"".join(served.streaming_content)
    assert not [s for s in SECRETS if s.encode() in data]
    assert not Image.open(io.BytesIO(data)).getexif()
