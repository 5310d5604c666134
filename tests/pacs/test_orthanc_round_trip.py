"""The issue's integration check with a real Orthanc PACS: a study stored in Orthanc is sent to the
portal (STOW-RS, then C-STORE), classified by a real worker, and its DICOM SR appears back in
Orthanc under the same study (STOW-RS, then C-STORE)."""

from __future__ import annotations

from datetime import date

import pytest
from dicomweb_client.api import DICOMwebClient
from knox.models import AuthToken

from cases.models import Prediction, Scan
from pacs.models import DicomNode, ResultExport
from pacs.receiver import Receiver
from tests.conftest import restart_worker, wait_for
from tests.pacs.orthanc import free_port
from tests.pacs.orthanc import orthanc as orthanc  # noqa: F401  (the session's PACS)
from tests.pacs.series import ct_series, dataset_slices

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def known(patient):
    patient.mrn, patient.birth_date, patient.name = "P-1", date(1961, 3, 14), "Jane Roe"
    patient.save()
    return patient


@pytest.fixture
def pacs_worker(worker):
    """The test worker, restarted with a PACS destination (set per test), then as it was."""
    plain = dict(worker.env)

    def configure(**env: str):
        worker.env = {**plain, **env}
        restart_worker(worker)

    yield configure
    worker.env = plain
    restart_worker(worker)


def stored_in_orthanc(orthanc, files) -> str:
    for _, data in files:
        orthanc.upload(data)
    from io import BytesIO

    from pydicom import dcmread

    study_uid = dcmread(BytesIO(files[0][1])).StudyInstanceUID
    found = orthanc.study_id(study_uid)
    assert found, orthanc.log_tail()
    return study_uid


def sr_back_in_orthanc(orthanc, study_uid: str) -> None:
    def delivered() -> bool:
        return ResultExport.objects.filter(state="delivered").exists()

    wait_for(delivered, timeout=120, message=f"no SR delivered: {list(ResultExport.objects.values())}")
    reports = DICOMwebClient(orthanc.dicomweb_url).search_for_instances(
        study_instance_uid=study_uid, search_filters={"Modality": "SR"}
    )
    assert len(reports) == 1, orthanc.log_tail()


def classified(scan: Scan) -> Prediction:
    prediction = scan.predictions.get()
    wait_for(lambda: Prediction.objects.get(pk=prediction.pk).is_final, timeout=120, interval=0.5)
    prediction.refresh_from_db()
    assert prediction.status == "succeeded", prediction.error
    return prediction


def test_stow_rs_in_and_out(orthanc, pacs_worker, live_server, alice, known):  # noqa: F811
    pacs_worker(PACS_STOW_URL=orthanc.dicomweb_url)
    study_uid = stored_in_orthanc(orthanc, ct_series(dataset_slices(3), shuffle=True))
    token = AuthToken.objects.create(alice)[1]
    orthanc.dicomweb_server_put(
        "portal", url=f"{live_server.url}/dicomweb/", headers={"Authorization": f"Token {token}"}
    )
    orthanc.push_to_dicomweb("portal", [orthanc.study_id(study_uid)])
    scan = Scan.objects.get(study_instance_uid=study_uid)
    assert (scan.patient, scan.received_via, scan.slices.count()) == (known, "stow", 3)
    classified(scan)
    sr_back_in_orthanc(orthanc, study_uid)


def test_c_store_in_and_out(orthanc, pacs_worker, settings, known, team_a):  # noqa: F811
    pacs_worker(PACS_CSTORE=orthanc.cstore)
    settings.DICOM_PORT = free_port()
    DicomNode.objects.create(team=team_a, ae_title=orthanc.aet, addresses="127.0.0.1")
    receiver = Receiver().serve(block=False)
    try:
        study_uid = stored_in_orthanc(orthanc, ct_series(dataset_slices(2, "normal")))
        orthanc.modality_put("portal", aet=settings.DICOM_AE_TITLE, port=settings.DICOM_PORT)
        orthanc.push_to_modality("portal", [orthanc.study_id(study_uid)])
        wait_for(lambda: Scan.objects.filter(study_instance_uid=study_uid).exists(), timeout=60)
        scan = Scan.objects.get(study_instance_uid=study_uid)
        assert (scan.patient, scan.received_via) == (known, "cstore")
        classified(scan)
        sr_back_in_orthanc(orthanc, study_uid)
    finally:
        receiver.shutdown()
