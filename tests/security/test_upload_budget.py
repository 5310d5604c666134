"""One request may not make the portal decode more than a study's worth of pixels."""

import pytest
from django.core.exceptions import ValidationError

from cases import services
from cases.models import Scan
from tests.conftest import image_bytes, upload


def test_a_study_past_the_pixel_budget_is_refused_before_the_rest_is_decoded(
    alice, patient, settings, monkeypatch
):
    settings.UPLOAD_MAX_STUDY_PIXELS = 2 * 64 * 64
    checked = []
    original = services.uploads.slice_check

    def counting_check(upload, **kwargs):
        checked.append(kwargs["name"])
        return original(upload, **kwargs)

    monkeypatch.setattr(services.uploads, "slice_check", counting_check)
    files = [upload(f"{n}.png", image_bytes(size=(64, 64))) for n in range(5)]
    with pytest.raises(ValidationError) as refused:
        services.scan_upload(patient=patient, files=files, uploaded_by=alice)
    messages = refused.value.message_dict["files"]
    assert "more than 0.008192 megapixels in all" in messages[0]
    assert [m.split(":")[0] for m in messages[1:]] == ["3.png", "4.png"]
    assert checked == ["0.png", "1.png", "2.png"]  # the last two were never decoded
    assert not Scan.objects.exists()


def test_a_study_within_the_budget_is_stored(alice, patient, settings, django_capture_on_commit_callbacks):
    settings.UPLOAD_MAX_STUDY_PIXELS = 2 * 64 * 64
    with django_capture_on_commit_callbacks(execute=False):
        scan = services.scan_upload(
            patient=patient,
            files=[upload(f"{n}.png", image_bytes(size=(64, 64))) for n in range(2)],
            uploaded_by=alice,
        )
    assert scan.slices.count() == 2
