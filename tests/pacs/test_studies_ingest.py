"""The study is the unit of care: the series of one DICOM study join one study record, and an
instance sent again (by STOW-RS or C-STORE, or uploaded again) is acknowledged and never stored
twice; other content under a stored SOP Instance UID is a conflict, refused and recorded. The
studies API shows each study with its series, to the care team only."""

from __future__ import annotations

from datetime import date
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
import requests
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from knox.models import AuthToken
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]
from rest_framework.test import APIClient

from audit.models import AuditEntry
from cases.models import Prediction, Scan, Slice, Study
from tests.conftest import wait_for
from tests.pacs.series import ct_series, dataset_slices

pytestmark = pytest.mark.django_db(transaction=True)
STUDY = "1.2.826.0.1.3680043.10.77"


@pytest.fixture
def known(patient):
    patient.mrn, patient.name, patient.birth_date = "P-1", "Jane Roe", date(1961, 3, 14)
    patient.save()
    return patient


def stow(live_server, user, files: list[tuple[str, bytes]]) -> requests.Response:
    token = AuthToken.objects.create(user)[1]
    body = b"".join(b"--b\r\nContent-Type: application/dicom\r\n\r\n" + data + b"\r\n" for _, data in files)
    return requests.post(
        f"{live_server.url}/dicomweb/studies",
        data=body + b"--b--\r\n",
        headers={
            "Authorization": f"Token {token}",
            "Content-Type": 'multipart/related; type="application/dicom"; boundary=b',
        },
        timeout=120,
    )


def referenced(response: requests.Response) -> set[str]:
    return {item["00081155"]["Value"][0] for item in response.json().get("00081199", {}).get("Value", [])}


def uids(files: list[tuple[str, bytes]]) -> set[str]:
    return {dcmread(BytesIO(data)).SOPInstanceUID for _, data in files}


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_two_series_of_one_study_are_one_study_with_two_series(live_server, alice, known):
    lung = ct_series(dataset_slices(2), study_uid=STUDY, series_number=2, accession="ACC-5")
    soft = ct_series(dataset_slices(2), study_uid=STUDY, series_number=3, series_description="CHEST SOFT")

    assert stow(live_server, alice, lung).status_code == 200
    assert stow(live_server, alice, soft).status_code == 200

    study = Study.objects.get()
    assert (study.patient, study.study_instance_uid, study.accession_number) == (known, STUDY, "ACC-5")
    assert study.series.count() == 2 and Scan.objects.count() == 2
    answer = api(alice).get(reverse("api:study-detail", args=[study.pk])).json()
    assert [s["series_number"] for s in answer["series"]] == [2, 3]
    assert [s["slices"] for s in answer["series"]] == [2, 2]
    assert AuditEntry.objects.filter(action="read", object_type="study", object_id=study.pk).exists()


def test_the_same_series_sent_twice_by_stow_is_stored_once_and_acknowledged(live_server, alice, known):
    files = ct_series(dataset_slices(3), study_uid=STUDY)
    first = stow(live_server, alice, files)

    again = stow(live_server, alice, files)

    assert first.status_code == again.status_code == 200
    assert referenced(again) == uids(files) and "00081198" not in again.json()
    assert (Study.objects.count(), Scan.objects.count(), Slice.objects.count()) == (1, 1, 3)
    assert Prediction.objects.count() == 1


def test_other_content_under_a_stored_uid_is_a_refused_and_recorded_conflict(live_server, alice, known):
    files = ct_series(dataset_slices(1), study_uid=STUDY, series_uid="1.2.826.0.1.3680043.10.77.1")
    stow(live_server, alice, files)
    ds = dcmread(BytesIO(files[0][1]))
    ds.PixelData = (ds.pixel_array // 2).astype(ds.pixel_array.dtype).tobytes()  # other pixels, same UID
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)

    response = stow(live_server, alice, [("IM0001.dcm", buffer.getvalue())])

    assert response.status_code == 409
    [failed] = response.json()["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [0x0111] and failed["00081155"]["Value"] == [ds.SOPInstanceUID]
    assert "already stored" in response.headers["Warning"]
    assert Slice.objects.count() == 1
    assert AuditEntry.objects.filter(object_type="dicom_instance", outcome="refused").exists()


def test_more_instances_of_a_stored_series_are_refused_with_the_reason(live_server, alice, known):
    series = "1.2.826.0.1.3680043.10.77.2"
    stow(live_server, alice, ct_series(dataset_slices(2), study_uid=STUDY, series_uid=series))
    more = ct_series(dataset_slices(3)[2:], study_uid=STUDY, series_uid=series, first_instance=3)

    response = stow(live_server, alice, more)

    assert response.status_code == 409 and "a series is stored once, whole" in response.headers["Warning"]
    assert Slice.objects.count() == 2


def c_store(port: int, files: list[tuple[str, bytes]]) -> list[int]:
    ae = AE(ae_title="CT-ROUTER")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="LUNGPORTAL")
    assert assoc.is_established
    statuses = [assoc.send_c_store(dcmread(BytesIO(data))).Status for _, data in files]
    assoc.release()
    return statuses


def test_a_series_sent_by_stow_then_by_c_store_is_still_one_series(
    live_server, router_receiver, alice, known, settings
):
    files = ct_series(dataset_slices(2), study_uid=STUDY)
    assert stow(live_server, alice, files).status_code == 200

    statuses = c_store(router_receiver, files)

    # acknowledged without being kept (the team holds them as sent): the association's inbox folder
    # is stored (with nothing in it) and removed; only then are the counts final
    assert statuses == [0x0000, 0x0000]
    inbox = Path(settings.DICOM_INBOX_DIR)
    wait_for(lambda: not any(inbox.iterdir()), timeout=30, message="the delivery finished")
    counts = (Study.objects.count(), Scan.objects.count(), Slice.objects.count(), Prediction.objects.count())
    assert counts == (1, 1, 2, 1)


def test_a_dicom_upload_sent_again_by_hand_is_refused_as_already_stored(alice, known):
    files = ct_series(dataset_slices(2), study_uid=STUDY)
    url = reverse("api:patient-scans", args=[known.pk])

    def upload() -> Any:
        uploads = [SimpleUploadedFile(name, data, content_type="application/dicom") for name, data in files]
        return api(alice).post(url, {"files": uploads}, format="multipart")

    assert upload().status_code == 202
    again = upload()

    assert again.status_code == 400
    assert "already stored" in again.json()["errors"]["files"][0]
    assert Scan.objects.count() == 1


# --- the studies API: the team's studies only -------------------------------------------------------


def test_the_studies_api_lists_the_teams_studies_and_hides_the_rest(live_server, alice, charlie, known):
    stow(live_server, alice, ct_series(dataset_slices(1), study_uid=STUDY))
    study = Study.objects.get()

    mine = api(alice).get(reverse("api:study-list")).json()
    theirs = api(charlie).get(reverse("api:study-list")).json()
    outsider = api(charlie).get(reverse("api:study-detail", args=[study.pk]))
    series = api(alice).get(reverse("api:study-series", args=[study.pk])).json()

    assert [item["id"] for item in mine["results"]] == [study.pk] and theirs["results"] == []
    assert outsider.status_code == 404
    assert AuditEntry.objects.filter(action="refused", object_type="study", object_id=study.pk).exists()
    assert [item["id"] for item in series] == [study.series.get().pk]
    assert APIClient().get(reverse("api:study-list")).status_code == 401
    assert len(mine["results"][0]["series"]) == 1


def test_the_studies_api_answers_hostile_filters_with_400(alice):
    for query in ("patient=99999999999999999999999999", "patient=-1", "patient=x", "study_from=yesterday"):
        response = api(alice).get(reverse("api:study-list") + "?" + query)
        assert response.status_code == 400, (query, response.status_code)
