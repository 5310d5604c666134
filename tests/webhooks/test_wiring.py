"""The clinical services emit their events: a study received (upload and DICOM), a review signed
or amended, a prediction failed (succeeded and not assessable: the worker's store, covered by
the acceptance check with a real worker)."""

from __future__ import annotations

from django.core.files.uploadedfile import SimpleUploadedFile

from cases.services import prediction_runs
from pacs.ingest import study_upload
from pacs.synthetic import ct_series
from tests.outbox.helpers import relay
from tests.reading.studies import sign, study
from webhooks.models import WebhookEvent


def types() -> list[str]:
    relay()  # events published to the outbox reach webhooks when the integrations worker relays them
    return list(WebhookEvent.objects.order_by("pk").values_list("type", flat=True))


def test_uploads_and_readings_emit_their_events(endpoint, alice, bob, patient):
    scan = study(patient, alice, suspicion=0.9)
    relay()
    first = sign(scan, bob, "malignant")
    sign(scan, alice, "benign", amends=first)
    assert types() == ["study.received", "review.signed", "review.amended"]
    event = WebhookEvent.objects.get(type="review.amended")
    assert event.team == patient.team and event.payload["data"]["review"]["id"] != first.pk


def test_each_dicom_series_is_a_study_received(endpoint, alice, patient):
    import numpy as np

    slices = [np.zeros((64, 64), dtype=np.int16)]
    files = ct_series(slices, patient_id=patient.mrn, series_number=2) + [
        (f"b-{name}", data) for name, data in ct_series(slices, patient_id=patient.mrn, series_number=3)
    ]
    uploads = [SimpleUploadedFile(name, data, content_type="application/dicom") for name, data in files]
    scans = study_upload(patient=patient, files=uploads, uploaded_by=alice)
    assert types() == ["study.received", "study.received"] and len(scans) == 2


def test_a_failed_prediction_is_an_event(endpoint, alice, patient):
    from django.utils import timezone

    from cases.models import Prediction

    scan = study(patient, alice, status="running")
    prediction = scan.predictions.get()
    Prediction.objects.filter(pk=prediction.pk).update(started_at=timezone.now())
    prediction.refresh_from_db()
    prediction_runs._prediction_fail(prediction, "The model could not be loaded.")
    assert types()[-1] == "prediction.failed"
