"""Results back to the PACS: the export row, its download, and delivery to a real Orthanc by STOW-RS
and C-STORE, refused deliveries included."""

from __future__ import annotations

import io
from datetime import timedelta

import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from django.utils import timezone
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from cases.models import Scan
from lungportal.celery import app
from pacs import services, tasks
from pacs.models import ResultExport
from tests.pacs.orthanc import Orthanc, free_port
from tests.pacs.orthanc import orthanc as orthanc  # the fixture, re-exported for these tests
from tests.pacs.test_structured_report import dicom_scan, finished_prediction


@pytest.fixture
def no_pacs(settings):
    settings.PACS_STOW_URL = ""
    settings.PACS_STOW_AUTHORIZATION = ""
    settings.PACS_CSTORE = ""
    settings.PACS_DELIVERY_MAX_ATTEMPTS = 3
    return settings


@pytest.fixture
def dicom_prediction(patient):
    return finished_prediction(dicom_scan(patient, slices=3))


def source_instances(scan: Scan) -> list[bytes]:
    """The scan's CT instances as the PACS held them before sending them to us (tiny pixels)."""
    files = []
    for item in scan.slices.all():
        ds = pydicom.Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = item.sop_class_uid
        ds.SOPInstanceUID = item.sop_instance_uid
        ds.StudyInstanceUID = scan.study_instance_uid
        ds.SeriesInstanceUID = scan.series_instance_uid
        ds.Modality = "CT"
        ds.PatientID = scan.dicom_patient_id
        ds.PatientName = scan.dicom_patient_name
        ds.PatientBirthDate = scan.dicom_birth_date.strftime("%Y%m%d") if scan.dicom_birth_date else ""
        ds.PatientSex = scan.dicom_sex
        ds.StudyDate = scan.study_date.strftime("%Y%m%d")
        ds.AccessionNumber = scan.accession_number
        ds.SeriesNumber = scan.series_number
        ds.InstanceNumber = item.instance_number
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.Rows = ds.Columns = 8
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        ds.PixelData = np.full((8, 8), 1000, dtype=np.int16).tobytes()
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        files.append(buffer.getvalue())
    return files


def in_orthanc(orthanc: Orthanc, scan: Scan) -> str:
    """Store the source series in Orthanc; its ID of the study."""
    for data in source_instances(scan):
        orthanc.upload(data)
    study_id = orthanc.study_id(scan.study_instance_uid)
    assert study_id is not None
    return study_id


def deliver_until_final(export: ResultExport) -> ResultExport:
    """What the task's retries do, without the waiting."""
    for _ in range(20):
        ResultExport.objects.filter(pk=export.pk).update(next_attempt_at=timezone.now())  # time passes
        try:
            services.result_export_deliver(export.pk)
        except services.DeliveryRetry:
            continue
        break
    export.refresh_from_db()
    return export


def assert_report_under_study(orthanc: Orthanc, export: ResultExport, study_id: str) -> None:
    scan = export.prediction.scan
    client = DICOMwebClient(orthanc.dicomweb_url.rstrip("/"))
    found = client.search_for_instances(
        study_instance_uid=scan.study_instance_uid, search_filters={"Modality": "SR"}
    )
    assert [pydicom.Dataset.from_json(item).SOPInstanceUID for item in found] == [export.sop_instance_uid]
    series = orthanc.ok(orthanc.get(f"studies/{study_id}/series"))
    assert sorted(item["MainDicomTags"]["Modality"] for item in series) == ["CT", "SR"]
    # What Orthanc holds is what we built: the report retrieved over WADO names the source series.
    sr_series = next(item for item in series if item["MainDicomTags"]["Modality"] == "SR")
    stored = client.retrieve_instance(
        scan.study_instance_uid, sr_series["MainDicomTags"]["SeriesInstanceUID"], export.sop_instance_uid
    )
    evidence = stored.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.SeriesInstanceUID == scan.series_instance_uid


# --- the export row and the download ------------------------------------------------------------


def test_without_a_destination_no_task_is_sent_and_the_report_is_downloadable(
    no_pacs, dicom_prediction, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        export = services.result_export_enqueue(dicom_prediction)

    assert callbacks == []
    assert export is not None
    assert (export.destination, export.state, export.attempts) == ("", ResultExport.State.PENDING, 0)
    report = pydicom.dcmread(io.BytesIO(services.result_export_bytes(dicom_prediction)))
    assert report.SOPInstanceUID == export.sop_instance_uid
    assert report.StudyInstanceUID == dicom_prediction.scan.study_instance_uid


def test_with_a_destination_delivery_is_sent_on_commit(
    no_pacs, dicom_prediction, django_capture_on_commit_callbacks, monkeypatch
):
    no_pacs.PACS_STOW_URL = "http://pacs.example:8042/dicom-web/"
    sent = []
    monkeypatch.setattr(tasks.result_export_deliver, "apply_async", lambda **kwargs: sent.append(kwargs))

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        export = services.result_export_enqueue(dicom_prediction)
        assert sent == []  # not before the prediction's results are committed

    assert export is not None
    assert len(callbacks) == 1
    assert sent == [{"args": [export.pk], "retry": False}]
    assert export.destination == "STOW-RS http://pacs.example:8042/dicom-web/"
    assert export.state == ResultExport.State.PENDING


def test_download_creates_the_export_once_and_keeps_its_uid(no_pacs, dicom_prediction):
    first = pydicom.dcmread(io.BytesIO(services.result_export_bytes(dicom_prediction)))
    again = pydicom.dcmread(io.BytesIO(services.result_export_bytes(dicom_prediction)))

    export = ResultExport.objects.get(prediction=dicom_prediction)
    assert first.SOPInstanceUID == again.SOPInstanceUID == export.sop_instance_uid
    assert first.SeriesInstanceUID == again.SeriesInstanceUID
    assert services.result_export_enqueue(dicom_prediction) == export


def test_uploaded_image_study_gets_no_export(no_pacs, slice_result, django_capture_on_commit_callbacks):
    no_pacs.PACS_STOW_URL = "http://pacs.example:8042/dicom-web/"
    prediction = slice_result.prediction
    prediction.refresh_from_db()

    with django_capture_on_commit_callbacks() as callbacks:
        assert services.result_export_enqueue(prediction) is None

    assert callbacks == []
    assert not ResultExport.objects.exists()
    with pytest.raises(ValueError, match="not received as a DICOM series"):
        services.result_export_bytes(prediction)
    assert not ResultExport.objects.exists()


def test_delivery_backs_off_exponentially_for_hours():
    waits = [tasks.result_export_backoff(attempt) for attempt in range(1, 10)]

    assert waits[:4] == [30, 60, 120, 240]
    assert max(waits) == 3600
    assert sum(waits) > 2 * 3600
    assert tasks.result_export_deliver.acks_late
    assert app.amqp.router.route({}, tasks.result_export_deliver.name)["queue"].name == "integrations"


# --- delivery to a real Orthanc -----------------------------------------------------------------


def test_report_is_stored_in_orthanc_by_stow_rs(no_pacs, orthanc, dicom_prediction):
    study_id = in_orthanc(orthanc, dicom_prediction.scan)
    no_pacs.PACS_STOW_URL = orthanc.dicomweb_url
    export = services.result_export_enqueue(dicom_prediction)
    assert export is not None

    delivered = services.result_export_deliver(export.pk)

    assert delivered is not None
    assert delivered.state == ResultExport.State.DELIVERED, delivered.last_error + orthanc.log_tail()
    assert (delivered.attempts, delivered.last_error) == (1, "")
    assert delivered.delivered_at is not None
    assert delivered.destination == f"STOW-RS {orthanc.dicomweb_url}"
    assert_report_under_study(orthanc, delivered, study_id)


def test_report_is_stored_in_orthanc_by_c_store(no_pacs, orthanc, dicom_prediction):
    study_id = in_orthanc(orthanc, dicom_prediction.scan)
    no_pacs.PACS_CSTORE = orthanc.cstore
    export = services.result_export_enqueue(dicom_prediction)
    assert export is not None

    delivered = services.result_export_deliver(export.pk)

    assert delivered is not None
    assert delivered.state == ResultExport.State.DELIVERED, delivered.last_error + orthanc.log_tail()
    assert delivered.destination == f"C-STORE {orthanc.cstore}"
    assert_report_under_study(orthanc, delivered, study_id)


def test_delivered_report_is_not_sent_again(no_pacs, orthanc, dicom_prediction):
    no_pacs.PACS_STOW_URL = orthanc.dicomweb_url
    export = services.result_export_enqueue(dicom_prediction)
    assert export is not None
    services.result_export_deliver(export.pk)

    assert services.result_export_deliver(export.pk) is None

    export.refresh_from_db()
    assert (export.state, export.attempts) == (ResultExport.State.DELIVERED, 1)


def test_orthanc_answering_4xx_is_recorded_and_fails_after_the_last_attempt(
    no_pacs, orthanc, dicom_prediction
):
    no_pacs.PACS_STOW_URL = f"{orthanc.http_url}/no-such-root/"
    export = services.result_export_enqueue(dicom_prediction)
    assert export is not None

    with pytest.raises(services.DeliveryRetry):
        services.result_export_deliver(export.pk)
    export.refresh_from_db()
    assert (export.state, export.attempts) == (ResultExport.State.PENDING, 1)
    assert "HTTP 404" in export.last_error
    assert "PACS_STOW_URL" in export.last_error

    export = deliver_until_final(export)
    assert (export.state, export.attempts) == (ResultExport.State.FAILED, 3)
    assert "HTTP 404" in export.last_error


# --- refused deliveries -------------------------------------------------------------------------


def test_stow_rs_to_nothing_listening_is_retried_then_failed(no_pacs, dicom_prediction):
    no_pacs.PACS_STOW_URL = f"http://127.0.0.1:{free_port()}/dicom-web/"
    export = services.result_export_enqueue(dicom_prediction)
    assert export is not None

    with pytest.raises(services.DeliveryRetry) as retry:
        services.result_export_deliver(export.pk)
    assert retry.value.attempts == 1
    export.refresh_from_db()
    assert export.state == ResultExport.State.PENDING
    assert "connection refused" in export.last_error

    export = deliver_until_final(export)
    assert (export.state, export.attempts) == (ResultExport.State.FAILED, 3)
    assert export.delivered_at is None
    assert services.result_export_deliver(export.pk) is None  # a failed export stays failed


def test_c_store_to_nothing_listening_is_retried_then_failed(no_pacs, dicom_prediction):
    no_pacs.PACS_CSTORE = f"ORTHANC@127.0.0.1:{free_port()}"
    export = services.result_export_enqueue(dicom_prediction)
    assert export is not None

    export = deliver_until_final(export)

    assert (export.state, export.attempts) == (ResultExport.State.FAILED, 3)
    assert "could not connect to ORTHANC@127.0.0.1" in export.last_error
    assert "refused" in export.last_error


def test_malformed_c_store_setting_is_named_in_the_error(no_pacs, dicom_prediction):
    no_pacs.PACS_CSTORE = "orthanc:4242"
    no_pacs.PACS_DELIVERY_MAX_ATTEMPTS = 1
    export = services.result_export_enqueue(dicom_prediction)
    assert export is not None

    export = deliver_until_final(export)

    assert export.state == ResultExport.State.FAILED
    assert "AET@host:port" in export.last_error


def test_export_left_sending_by_a_dead_worker_is_claimed_again(no_pacs, dicom_prediction):
    no_pacs.PACS_STOW_URL = f"http://127.0.0.1:{free_port()}/dicom-web/"
    export = services.result_export_enqueue(dicom_prediction)
    assert export is not None
    ResultExport.objects.filter(pk=export.pk).update(state=ResultExport.State.SENDING, attempts=1)

    with pytest.raises(services.DeliveryRetry):
        services.result_export_deliver(export.pk)

    export.refresh_from_db()
    assert (export.state, export.attempts) == (ResultExport.State.PENDING, 2)


def test_re_enqueued_export_keeps_its_uid_and_counts_afresh(no_pacs, dicom_prediction):
    no_pacs.PACS_STOW_URL = f"http://127.0.0.1:{free_port()}/dicom-web/"
    no_pacs.PACS_DELIVERY_MAX_ATTEMPTS = 1
    export = services.result_export_enqueue(dicom_prediction)
    assert export is not None
    failed = deliver_until_final(export)
    assert failed.state == ResultExport.State.FAILED

    again = services.result_export_enqueue(dicom_prediction)

    assert again is not None
    assert again.sop_instance_uid == export.sop_instance_uid
    assert (again.state, again.attempts, again.last_error) == (ResultExport.State.PENDING, 0, "")


def test_unique_uid_per_export(no_pacs, patient):
    first = services.result_export_enqueue(finished_prediction(dicom_scan(patient, slices=1)))
    second = services.result_export_enqueue(
        finished_prediction(dicom_scan(patient, slices=1, study_instance_uid=generate_uid()))
    )

    assert first is not None and second is not None
    assert first.sop_instance_uid != second.sop_instance_uid


def test_task_retries_until_the_attempts_run_out(no_pacs, dicom_prediction, monkeypatch):
    no_pacs.PACS_STOW_URL = f"http://127.0.0.1:{free_port()}/dicom-web/"
    monkeypatch.setattr(tasks, "result_export_backoff", lambda attempts: 0)  # eager: no waiting
    export = services.result_export_enqueue(dicom_prediction)
    assert export is not None

    # Eagerly, each retry runs at once; the count in the database ends it.
    tasks.result_export_deliver.apply(args=[export.pk])

    export.refresh_from_db()
    assert (export.state, export.attempts) == (ResultExport.State.FAILED, 3)


def test_an_admin_redelivers_a_failed_report(
    admin_client, patient, settings, django_capture_on_commit_callbacks
):
    from django.urls import reverse

    from pacs.models import ResultExport as Export

    prediction = finished_prediction(dicom_scan(patient))
    export = Export.objects.create(
        prediction=prediction, sop_instance_uid="1.2.3.4", state="failed", attempts=10
    )
    changelist = reverse("admin:pacs_resultexport_changelist")
    settings.PACS_STOW_URL = ""
    settings.PACS_CSTORE = ""
    refused = admin_client.post(
        changelist, {"action": "redeliver", "_selected_action": [export.pk]}, follow=True
    )
    assert "No PACS destination is configured" in refused.content.decode()
    settings.PACS_STOW_URL = "http://127.0.0.1:9/dicom-web/"
    with django_capture_on_commit_callbacks(execute=False) as sent:
        admin_client.post(changelist, {"action": "redeliver", "_selected_action": [export.pk]})
    export.refresh_from_db()
    assert (export.state, export.attempts, len(sent)) == ("pending", 0, 1)


def test_the_sweep_sends_again_an_export_whose_message_was_lost(no_pacs, dicom_prediction, monkeypatch):
    no_pacs.PACS_STOW_URL = f"http://127.0.0.1:{free_port()}/dicom-web/"
    sent: list[int] = []
    monkeypatch.setattr(services, "_deliver_later", sent.append)
    export = services.result_export_enqueue(dicom_prediction)  # its on-commit message never leaves
    assert export is not None

    assert services.result_exports_sweep() == 0  # not overdue yet: its own message may still come
    ResultExport.objects.filter(pk=export.pk).update(
        next_attempt_at=timezone.now() - services.SWEEP_GRACE - timedelta(seconds=1)
    )

    assert services.result_exports_sweep() == 1 and sent == [export.pk]


def test_a_failed_attempt_is_due_after_its_backoff_and_a_lost_sending_one_after_its_limit(
    no_pacs, dicom_prediction, monkeypatch
):
    no_pacs.PACS_STOW_URL = f"http://127.0.0.1:{free_port()}/dicom-web/"
    sent: list[int] = []
    monkeypatch.setattr(services, "_deliver_later", sent.append)
    export = services.result_export_enqueue(dicom_prediction)
    assert export is not None
    before = timezone.now()

    with pytest.raises(services.DeliveryRetry):
        services.result_export_deliver(export.pk)

    export.refresh_from_db()
    assert export.next_attempt_at is not None
    assert export.next_attempt_at - before >= timedelta(seconds=tasks.result_export_backoff(1) - 1)
    claimed = ResultExport.objects.filter(pk=export.pk)
    claimed.update(state=ResultExport.State.SENDING, next_attempt_at=timezone.now() - timedelta(minutes=3))
    assert services.result_exports_sweep() == 1 and sent == [export.pk]  # its worker died mid-send


def test_a_duplicate_message_finds_nothing_to_do_until_the_export_is_due(
    no_pacs, dicom_prediction, monkeypatch
):
    no_pacs.PACS_STOW_URL = f"http://127.0.0.1:{free_port()}/dicom-web/"
    monkeypatch.setattr(services, "_deliver_later", lambda export_id: None)
    export = services.result_export_enqueue(dicom_prediction)
    assert export is not None
    with pytest.raises(services.DeliveryRetry):
        services.result_export_deliver(export.pk)

    assert services.result_export_deliver(export.pk) is None  # backing off: a second copy does nothing
    assert services.result_exports_sweep() == 0
    export.refresh_from_db()
    assert (export.state, export.attempts) == (ResultExport.State.PENDING, 1)
