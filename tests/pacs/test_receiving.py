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
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils.html import escape
from knox.models import AuthToken
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from audit.models import AuditEntry
from cases.models import Patient, Scan
from pacs.models import DicomNode, UnmatchedSeries, validate_networks
from pacs.reading import readable_name
from pacs.receiver import Receiver
from pacs.receiving import name_words, studies_receive
from tests import factories
from tests.pacs.orthanc import free_port
from tests.pacs.series import ct_series, dataset_slices
from tests.private_files import assert_private_tree

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def known(patient):
    """The patient the test series are of: MRN = PatientID, the same birth date and name."""
    patient.mrn, patient.birth_date, patient.name = "P-1", date(1961, 3, 14), "Jane Roe"
    patient.save()
    return patient


def stow_client(live_server, user) -> DICOMwebClient:
    token = AuthToken.objects.create(user)[1]
    client = DICOMwebClient(f"{live_server.url}/dicomweb", headers={"Authorization": f"Token {token}"})
    client.set_chunk_size(10**9)  # the test server cannot de-chunk; gunicorn (make run) can
    return client


def datasets(files):
    return [dcmread(BytesIO(data)) for _, data in files]


def test_stow_rs_stores_a_known_patients_series_and_answers_each_instance(
    live_server, alice, known, private_media
):
    files = ct_series(dataset_slices(3), shuffle=True)
    answer = stow_client(live_server, alice).store_instances(datasets(files))
    referenced = {item.ReferencedSOPInstanceUID for item in answer.ReferencedSOPSequence}
    assert referenced == {ds.SOPInstanceUID for ds in datasets(files)}
    scan = Scan.objects.get()
    assert (scan.patient, scan.received_via, scan.slices.count()) == (known, "stow", 3)
    assert scan.predictions.get().status == "queued"
    assert AuditEntry.objects.filter(action="upload", object_id=scan.pk, channel="api", user=alice).exists()
    assert_private_tree(private_media)


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
    waiting = UnmatchedSeries.objects.get()
    assert waiting.reason == "other_birth_date" and not Scan.objects.exists()
    assert waiting.detail == (
        "PatientBirthDate 1970-01-01 differs from the birth date of the patient with MRN P-1."
    )


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
    # PS3.18: 409, every instance in FailedSOPSequence with its FailureReason (A900: not a CT image)
    assert refused.status_code == 409 and refused.headers["Content-Type"] == "application/dicom+json"
    [failed] = refused.json()["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [0xA900] and "00081199" not in refused.json()
    assert failed["00081155"]["Value"] == [dcmread(BytesIO(mr[0][1])).SOPInstanceUID]
    assert "not a CT image" in refused.headers["Warning"]
    assert not Scan.objects.exists() and not UnmatchedSeries.objects.exists()


# --- whose series it is: MRN, birth date and name must all agree ----------------------------------


def received(team, **header):
    """One series of `header` (ct_series' arguments) as a PACS sends it to `team`."""
    files = ct_series(dataset_slices(1), **header)
    return studies_receive(team=team, files=files, via=Scan.Received.STOW, sender="alice")


def test_a_series_without_a_birth_date_waits(known, team_a):
    waiting = received(team_a, birth_date="").waiting[0]
    assert (waiting.reason, waiting.detail) == (
        "no_birth_date",
        "The header has no PatientBirthDate to confirm MRN P-1.",
    )
    assert not Scan.objects.exists()


def test_a_series_without_a_name_waits(known, team_a):
    waiting = received(team_a, patient_name="").waiting[0]
    assert waiting.reason == "no_name"
    assert waiting.detail == "The header has no PatientName to confirm MRN P-1."
    assert not Scan.objects.exists()


def test_a_series_of_another_name_waits_and_the_team_sees_why(client, alice, known, team_a, private_media):
    waiting = received(team_a, patient_name="Doe^John").waiting[0]
    assert not Scan.objects.exists()
    assert_private_tree(private_media)  # its DICOM files, full headers and all
    assert waiting.reason == "other_name"
    assert waiting.detail == "PatientName 'John Doe' does not match the patient's name for MRN P-1."
    client.force_login(alice)
    page = client.get(reverse("pacs:unmatched_list")).content.decode()
    assert escape(waiting.detail) in page and "the name differs from the patient&#x27;s" in page


def test_every_disagreement_is_said_the_first_giving_the_reason(known, team_a):
    waiting = received(team_a, patient_name="Doe^John", birth_date="19700101").waiting[0]
    assert waiting.reason == "other_birth_date"
    assert "PatientBirthDate 1970-01-01 differs" in waiting.detail
    assert "PatientName 'John Doe' does not match" in waiting.detail


@pytest.mark.parametrize(
    ("record", "header"),
    [
        ("Carol Interop", "Interop^Carol"),
        ("Carol Interop", "INTEROP^CAROL^^^"),
        ("Jane Roe", "roe^jane"),
        ("Zoë O'Neil", "ONEIL^ZOE"),
    ],
)
def test_the_same_name_in_another_order_case_or_spelling_of_accents_is_stored(known, team_a, record, header):
    known.name = record
    known.save()
    assert [scan.patient for scan in received(team_a, patient_name=header).scans] == [known]
    assert not UnmatchedSeries.objects.exists()


@pytest.mark.parametrize(
    ("header", "record", "same"),
    [
        ("Interop^Carol", "Carol Interop", True),
        ("INTEROP^CAROL^^^", "Carol Interop", True),
        ("Interop^Carol=インターオプ^キャロル", "Carol Interop", True),  # the alphabetic group counts
        ("Müller-Lüdenscheidt^Hans", "hans muller ludenscheidt", True),
        ("Roe^Jane", "Carol Interop", False),
        ("Roe^Jane^Mary", "Jane Roe", False),  # a middle name one side lacks: uncertain
        ("Roe", "Jane Roe", False),
    ],
)
def test_names_compare_by_their_words(header, record, same):
    assert (name_words(readable_name(header)) == name_words(record)) is same


def test_the_same_mrn_in_two_teams_lands_in_the_sending_teams_patient_only(
    live_server, alice, charlie, known, team_a, team_b
):
    factories.PatientFactory(team=team_b, mrn="P-1", name="Jane Roe", birth_date=known.birth_date)
    twin = Patient.objects.get(team=team_b, mrn="P-1")
    stow_client(live_server, charlie).store_instances(datasets(ct_series(dataset_slices(1), series_number=3)))
    assert [scan.patient for scan in Scan.objects.all()] == [twin]
    stow_client(live_server, alice).store_instances(datasets(ct_series(dataset_slices(1), series_number=4)))
    assert {scan.patient for scan in Scan.objects.all()} == {twin, known}
    assert known.scans.count() == 1 and twin.scans.count() == 1
    assert not UnmatchedSeries.objects.exists()


def test_only_staff_see_which_pacs_sent_a_waiting_series(client, alice, team_a):
    files = ct_series(dataset_slices(1), patient_id="X-9")
    studies_receive(team=team_a, files=files, via=Scan.Received.CSTORE, sender="CT-ROUTER")
    client.force_login(alice)
    page = client.get(reverse("pacs:unmatched_list")).content.decode()
    assert "X-9" in page and "DICOM C-STORE" in page and "CT-ROUTER" not in page
    client.force_login(factories.UserFactory(username="sam", is_staff=True, teams=[team_a]))
    page = client.get(reverse("pacs:unmatched_list")).content.decode()
    assert "X-9" in page and "DICOM C-STORE from CT-ROUTER" in page


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


def test_c_store_from_an_allowed_sender_is_stored_for_its_team(
    receiver, tmp_path, known, team_a, private_media
):
    DicomNode.objects.create(team=team_a, ae_title="CT-ROUTER", addresses="10.9.9.9, 127.0.0.0/8")
    result = storescu(receiver, written(tmp_path, ct_series(dataset_slices(3), shuffle=True)), "CT-ROUTER")
    assert result.returncode == 0, result.stderr
    wait_for_scans(1)
    scan = Scan.objects.get()
    assert (scan.patient, scan.received_via, scan.slices.count()) == (known, "cstore", 3)
    assert [s.instance_number for s in scan.slices.order_by("position")] == [1, 2, 3]
    assert_private_tree(private_media)


def test_c_store_from_an_unknown_caller_is_rejected(receiver, tmp_path, known, team_a):
    DicomNode.objects.create(team=team_a, ae_title="CT-ROUTER", addresses="127.0.0.0/8")
    result = storescu(receiver, written(tmp_path, ct_series(dataset_slices(1))), "STRANGER")
    assert "rejected" in (result.stdout + result.stderr).lower()
    assert not Scan.objects.exists()


def associate(port: int, calling: str) -> Association:
    ae = AE(ae_title=calling)
    ae.add_requested_context(CTImageStorage)
    ae.acse_timeout = 10
    return ae.associate("127.0.0.1", port, ae_title="LUNGPORTAL")


def test_c_store_from_an_allowed_title_at_another_address_is_rejected(receiver, known, team_a):
    node = DicomNode.objects.create(team=team_a, ae_title="CT-ROUTER", addresses="10.9.9.9")
    refused = associate(receiver, "CT-ROUTER")
    assert refused.is_rejected and not refused.is_established  # A-ASSOCIATE-RJ, before any data
    node.addresses = "10.9.9.9 127.0.0.0/8"  # the admin's change applies to the next association
    node.save()
    assoc = associate(receiver, "CT-ROUTER")
    assert assoc.is_established
    status = assoc.send_c_store(datasets(ct_series(dataset_slices(1)))[0])
    assoc.release()
    assert status.Status == 0x0000
    wait_for_scans(1)
    assert Scan.objects.get().patient == known


def test_a_disabled_sender_is_rejected_from_its_own_address(receiver, team_a):
    DicomNode.objects.create(team=team_a, ae_title="CT-ROUTER", addresses="127.0.0.1", enabled=False)
    assert associate(receiver, "CT-ROUTER").is_rejected


@pytest.mark.parametrize(
    ("addresses", "peer", "admitted"),
    [
        ("10.1.2.3", "10.1.2.3", True),
        ("10.9.9.9, 10.1.0.0/16", "10.1.200.7", True),
        ("10.1.2.3/24", "10.1.2.77", True),  # host bits tolerated: the /24
        ("fd00::/8 10.9.9.9", "fd12::1", True),
        ("127.0.0.0/8", "::ffff:127.0.0.1", True),  # a dual-stack listener's view of an IPv4 peer
        ("10.1.2.3", "10.1.2.4", False),
        ("10.1.0.0/16", "not an address", False),
    ],
)
def test_a_sender_admits_only_its_addresses(addresses, peer, admitted):
    assert DicomNode(addresses=addresses).admits(peer) is admitted


@pytest.mark.parametrize("addresses", ["", "  ", "10.1.2.300", "10.1.2.0/33", "pacs.example.org"])
def test_a_sender_needs_addresses_that_are_ip_networks(addresses):
    with pytest.raises(ValidationError):
        validate_networks(addresses)
