"""Studies from the PACS: STOW-RS (exercised with dicomweb-client against a live server) and the
C-STORE receiver (pynetdicom's storescu); patients found by PatientID within the sending team,
anything uncertain waiting in the unmatched list until a clinician resolves it."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from io import BytesIO
from pathlib import Path

import pytest
from dicomweb_client.api import DICOMwebClient
from django.urls import reverse
from knox.models import AuthToken
from pydicom import dcmread

from audit.models import AuditEntry
from cases.models import Patient, Scan
from pacs.models import DicomNode, UnmatchedSeries
from pacs.receiver import Receiver
from tests.pacs.orthanc import free_port
from tests.pacs.series import ct_series, dataset_slices

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def known(patient):
    """The patient the test series are of: MRN = PatientID, the same birth date."""
    patient.mrn, patient.birth_date = "P-1", date(1961, 3, 14)
    patient.save()
    return patient


def stow_client(live_server, user) -> DICOMwebClient:
    token = AuthToken.objects.create(user)[1]
    client = DICOMwebClient(f"{live_server.url}/dicomweb", headers={"Authorization": f"Token {token}"})
    client.set_chunk_size(10**9)  # the test server cannot de-chunk; gunicorn (make run) can
    return client


def datasets(files):
    return [dcmread(BytesIO(data)) for _, data in files]


def test_stow_rs_stores_a_known_patients_series_and_answers_each_instance(live_server, alice, known):
    files = ct_series(dataset_slices(3), shuffle=True)
    answer = stow_client(live_server, alice).store_instances(datasets(files))
    referenced = {item.ReferencedSOPInstanceUID for item in answer.ReferencedSOPSequence}
    assert referenced == {ds.SOPInstanceUID for ds in datasets(files)}
    scan = Scan.objects.get()
    assert (scan.patient, scan.received_via, scan.slices.count()) == (known, "stow", 3)
    assert scan.predictions.get().status == "queued"
    assert AuditEntry.objects.filter(action="upload", object_id=scan.pk, channel="api", user=alice).exists()


def test_stow_rs_keeps_an_unknown_patients_series_waiting_until_resolved(live_server, client, alice, team_a):
    files = ct_series(dataset_slices(2), patient_id="NEW-7", patient_name="Doe^John", birth_date="19500101")
    answer = stow_client(live_server, alice).store_instances(datasets(files))
    assert len(answer.ReferencedSOPSequence) == 2 and not Scan.objects.exists()
    waiting = UnmatchedSeries.objects.get()
    assert (waiting.reason, waiting.dicom_patient_id, waiting.team) == ("unknown", "NEW-7", team_a)
    client.force_login(alice)
    page = client.get(reverse("pacs:unmatched_list")).content.decode()
    assert "NEW-7" in page and "John Doe" in page
    response = client.post(reverse("pacs:unmatched_resolve", args=[waiting.pk]), {"register": "1"})
    scan = Scan.objects.get()
    assert response.status_code == 302 and response["Location"] == scan.get_absolute_url()
    assert (scan.patient.mrn, scan.patient.name, str(scan.patient.birth_date)) == (
        "NEW-7",
        "John Doe",
        "1950-01-01",
    )
    waiting.refresh_from_db()
    assert waiting.is_resolved and waiting.scan == scan and waiting.resolved_by == alice


def test_a_series_whose_birth_date_disagrees_waits(live_server, alice, known):
    stow_client(live_server, alice).store_instances(
        datasets(ct_series(dataset_slices(1), birth_date="19700101"))
    )
    assert UnmatchedSeries.objects.get().reason == "mismatch" and not Scan.objects.exists()


def test_a_waiting_series_can_be_assigned_to_an_existing_patient_by_mrn(client, live_server, alice, known):
    files = ct_series(dataset_slices(1), patient_id="p-1")  # the MRN in another case: a person decides
    stow_client(live_server, alice).store_instances(datasets(files))
    waiting = UnmatchedSeries.objects.get()
    assert waiting.reason == "ambiguous"
    client.force_login(alice)
    client.post(reverse("pacs:unmatched_resolve", args=[waiting.pk]), {"mrn": "P-1"})
    assert Scan.objects.get().patient == known


def test_a_clinician_of_another_team_neither_sees_nor_resolves_a_waiting_series(
    live_server, client, alice, charlie
):
    stow_client(live_server, alice).store_instances(datasets(ct_series(dataset_slices(1), patient_id="X-9")))
    waiting = UnmatchedSeries.objects.get()
    client.force_login(charlie)
    assert "X-9" not in client.get(reverse("pacs:unmatched_list")).content.decode()
    assert (
        client.post(reverse("pacs:unmatched_resolve", args=[waiting.pk]), {"register": "1"}).status_code
        == 404
    )
    assert not Scan.objects.exists()


def test_created_patients_when_configured(live_server, settings, alice, team_a):
    settings.DICOM_CREATE_PATIENTS = True
    stow_client(live_server, alice).store_instances(
        datasets(ct_series(dataset_slices(1), patient_id="AUTO-1"))
    )
    patient = Patient.objects.get(mrn="AUTO-1")
    assert patient.team == team_a and Scan.objects.get().patient == patient


def test_stow_rs_refuses_what_it_cannot_take_and_stores_nothing(live_server, alice, known):
    import requests

    token = AuthToken.objects.create(alice)[1]
    url = f"{live_server.url}/dicomweb/studies"
    auth = {"Authorization": f"Token {token}"}
    assert (
        requests.post(url, data=b"x", headers={**auth, "Content-Type": "application/json"}).status_code == 415
    )
    assert requests.post(url, data=b"", headers={"Content-Type": "multipart/related"}).status_code == 401
    mr = ct_series(dataset_slices(1), modality="MR")
    body = b"--b\r\nContent-Type: application/dicom\r\n\r\n" + mr[0][1] + b"\r\n--b--\r\n"
    refused = requests.post(
        url,
        data=body,
        headers={**auth, "Content-Type": 'multipart/related; type="application/dicom"; boundary=b'},
    )
    assert refused.status_code == 409 and "CT" in refused.json()["detail"]
    assert not Scan.objects.exists() and not UnmatchedSeries.objects.exists()


# --- C-STORE --------------------------------------------------------------------------------------


@pytest.fixture
def receiver(settings):
    settings.DICOM_PORT = free_port()
    server = Receiver().serve(block=False)
    yield settings.DICOM_PORT
    server.shutdown()


def storescu(port: int, folder: Path, calling: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pynetdicom",
            "storescu",
            "127.0.0.1",
            str(port),
            str(folder),
            "-aet",
            calling,
            "-aec",
            "LUNGPORTAL",
            "-r",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def written(tmp_path, files) -> Path:
    for name, data in files:
        (tmp_path / name).write_bytes(data)
    return tmp_path


def wait_for_scans(count: int) -> None:
    from tests.conftest import wait_for

    wait_for(lambda: Scan.objects.count() >= count, timeout=60, message=f"{count} scan(s) stored")


def test_c_store_from_an_allowed_sender_is_stored_for_its_team(receiver, tmp_path, known, team_a):
    DicomNode.objects.create(team=team_a, ae_title="CT-ROUTER")
    result = storescu(receiver, written(tmp_path, ct_series(dataset_slices(3), shuffle=True)), "CT-ROUTER")
    assert result.returncode == 0, result.stderr
    wait_for_scans(1)
    scan = Scan.objects.get()
    assert (scan.patient, scan.received_via, scan.slices.count()) == (known, "cstore", 3)
    assert [s.instance_number for s in scan.slices.order_by("position")] == [1, 2, 3]


def test_c_store_from_an_unknown_caller_is_rejected(receiver, tmp_path, known, team_a):
    DicomNode.objects.create(team=team_a, ae_title="CT-ROUTER")
    result = storescu(receiver, written(tmp_path, ct_series(dataset_slices(1))), "STRANGER")
    assert "rejected" in (result.stdout + result.stderr).lower()
    assert not Scan.objects.exists()
