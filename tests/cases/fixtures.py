"""Scans with results, built through the real upload service."""

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from cases import services
from cases.models import Prediction, SliceResult
from tests.conftest import image_bytes, upload


@pytest.fixture
def scan(patient, alice, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        return services.scan_upload(
            patient=patient,
            files=[upload("a.png", image_bytes()), upload("b.jpg", image_bytes("JPEG"), "image/jpeg")],
            uploaded_by=alice,
        )


@pytest.fixture
def prediction(scan):
    return scan.predictions.get()


@pytest.fixture
def slice_result(prediction):
    """A finished prediction as a worker stores it (setup only: the worker is tested elsewhere)."""
    heatmap = default_storage.save("heatmaps/test.png", ContentFile(image_bytes()))
    first = prediction.scan.slices.first()
    result = SliceResult.objects.create(
        prediction=prediction,
        slice=first,
        label="benign",
        p_normal=0.2,
        p_benign=0.7,
        p_malignant=0.1,
        heatmap=heatmap,
    )
    Prediction.objects.filter(pk=prediction.pk).update(
        status="succeeded",
        label="benign",
        p_normal=0.2,
        p_benign=0.7,
        p_malignant=0.1,
        suspicion=0.1,
        suspicious_slices=0,
        finding="No sign of malignancy; most likely benign.",
    )
    return result


@pytest.fixture
def objects(patient, scan, prediction, slice_result):
    """One of everything a care team owns, by kind, for the access matrices."""
    return {
        "patient": patient,
        "scan": scan,
        "prediction": prediction,
        "slice": scan.slices.first(),
        "slice_result": slice_result,
    }
