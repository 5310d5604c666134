"""DICOM intake bounded before it decodes, and honest to the sender: pixels from the header against
the per-image and per-request limits (a small compressed file that would unpack to gigabytes is
never decoded), bytes counted per request across every file and zip, STOW-RS bodies parsed as they
stream in, and every instance told whether it was kept (STOW-RS per PS3.18, C-STORE per instance).
Peak memory is measured with tracemalloc (numpy's arrays are traced too)."""

from __future__ import annotations

import shutil
import subprocess
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import date
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from django.urls import reverse
from knox.models import AuthToken
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, RLELossless
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]
from rest_framework.test import APIClient

from cases.models import Patient, Scan, Slice
from pacs.models import DicomNode, UnmatchedSeries
from pacs.reading import DicomRefused, Failure, read_series
from pacs.receiver import Receiver
from pacs.synthetic import rle_bomb
from tests.conftest import wait_for
from tests.pacs.orthanc import free_port
from tests.pacs.orthanc import orthanc as orthanc  # noqa: F401  (the session's PACS)
from tests.pacs.series import ct_series, dataset_slices

MB = 1024 * 1024


def peak_bytes(action: Callable[[], Any]) -> tuple[Any, int]:
    """What `action` returns, and the most memory it held at once above what was held before."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = action()
        return result, tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def refused_holding(files: list[tuple[str, bytes]]) -> tuple[DicomRefused | None, int]:
    """How `read_series` refused the files, and the most memory it held to do so."""

    def read() -> DicomRefused | None:
        try:
            read_series(files, max_slices=len(files))
        except DicomRefused as refused:
            return refused
        return None

    return peak_bytes(read)


# --- pixels: bounded from the header, before any pixel data is read --------------------------------


def test_an_rle_bomb_is_refused_from_its_header_without_being_decoded():
    bomb = rle_bomb(8192)
    assert len(bomb) < 2.1 * MB  # 128 MiB once decoded

    with pytest.raises(DicomRefused) as caught:
        read_series([("bomb.dcm", bomb)], max_slices=10)
    refused = caught.value
    assert str(refused).startswith("bomb.dcm: holds 67.1 megapixels, more than the 40 megapixels")
    assert "not decoded" in str(refused) and refused.failure == Failure.OUT_OF_RESOURCES


def test_decoding_an_rle_bomb_stays_within_a_few_times_its_file():
    bomb = rle_bomb(8192)

    refusal, peak = refused_holding([("bomb.dcm", bomb)])

    assert refusal is not None
    assert peak < 4 * len(bomb), f"{peak / MB:.1f} MB held to refuse a {len(bomb) / MB:.1f} MB file"


def test_images_past_the_upload_pixel_budget_are_refused_before_they_are_decoded(settings):
    settings.UPLOAD_MAX_PIXELS = 1024 * 1024
    settings.UPLOAD_MAX_STUDY_PIXELS = 2 * 1024 * 1024
    files = [(f"IM{n}.dcm", rle_bomb(1024, series_uid="1.2.3.4", study_uid="1.2.3")) for n in range(8)]
    for n, (_, data) in enumerate(files):  # distinct instances of one series
        ds = dcmread(BytesIO(data))
        ds.SOPInstanceUID, ds.InstanceNumber = f"1.2.3.4.{n + 1}", n + 1
        buffer = BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        files[n] = (files[n][0], buffer.getvalue())

    with pytest.raises(DicomRefused) as caught:
        read_series(files, max_slices=10)

    assert str(caught.value).startswith("IM2.dcm: not decoded: the images sent together pass 2.1 megapixels")


# --- bytes: one budget per request, across every file and zip --------------------------------------


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def zipped(files: list[tuple[str, bytes]], name: str) -> Any:
    import zipfile

    from django.core.files.uploadedfile import SimpleUploadedFile

    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for entry, data in files:
            archive.writestr(entry, data)
    return SimpleUploadedFile(name, buffer.getvalue(), content_type="application/zip")


def test_the_byte_limit_counts_every_zip_of_an_upload_together(alice, patient, settings):
    patient.mrn = "P-1"
    patient.save()
    series = ct_series(dataset_slices(3))  # about 0.5 MB per instance unpacked
    settings.DICOM_MAX_SERIES_BYTES = int(1.2 * MB)  # each zip alone is within it; the three are not
    zips = [zipped([file], f"part{n}.zip") for n, file in enumerate(series)]

    response = api(alice).post(
        reverse("api:patient-scans", args=[patient.pk]), {"files": zips}, format="multipart"
    )

    assert response.status_code == 400
    message = response.json()["errors"]["files"][0]
    assert message.startswith("part2.zip:IM0003.dcm: the DICOM sent together passes 1.2 MB")
    assert not Scan.objects.exists() and not Slice.objects.exists()


# --- STOW-RS: streamed, bounded, and answered per PS3.18 -------------------------------------------


def multipart_body(path: Path, parts: Iterator[bytes], boundary: str = "portal-test") -> Path:
    """A multipart/related body written to a file, so that the client streams it with a length."""
    with path.open("wb") as body:
        for data in parts:
            body.write(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
            body.write(data)
            body.write(b"\r\n")
        body.write(f"--{boundary}--\r\n".encode())
    return path


def stow(live_server, user, body: Path, boundary: str = "portal-test") -> requests.Response:
    token = AuthToken.objects.create(user)[1]
    with body.open("rb") as stream:
        return requests.post(
            f"{live_server.url}/dicomweb/studies",
            data=stream,
            headers={
                "Authorization": f"Token {token}",
                "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                "Accept": "application/dicom+json",
            },
            timeout=300,
        )


@pytest.fixture
def known(patient):
    patient.mrn, patient.name = "P-1", "Jane Roe"
    patient.birth_date = date(1961, 3, 14)
    patient.save()
    return patient


@pytest.mark.django_db(transaction=True)
def test_a_stow_body_past_the_limit_is_refused_holding_about_one_chunk(
    live_server, alice, known, settings, tmp_path
):
    settings.DICOM_MAX_SERIES_BYTES = 8 * MB
    instance = ct_series([np.zeros((1024, 1024), dtype=np.uint8)])[0][1]  # 2 MB
    body = multipart_body(tmp_path / "body", (instance for _ in range(20)))  # 40 MB
    assert body.stat().st_size > 40 * MB

    response, peak = peak_bytes(lambda: stow(live_server, alice, body))

    assert response.status_code == 413
    assert (
        "passes 8 MB" in response.json()["detail"] and "send the study in parts" in response.json()["detail"]
    )
    assert peak < 6 * MB, f"{peak / MB:.1f} MB held to refuse a {body.stat().st_size / MB:.0f} MB body"
    assert not Scan.objects.exists() and not UnmatchedSeries.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_large_stow_body_is_stored_holding_a_fraction_of_it(live_server, alice, known, tmp_path):
    images = [np.full((1024, 1024), n * 6, dtype=np.uint8) for n in range(40)]
    files = ct_series(images, patient_name="Roe^Jane")
    body = multipart_body(tmp_path / "body", (data for _, data in files))
    size = body.stat().st_size
    assert size > 80 * MB
    del files

    response, peak = peak_bytes(lambda: stow(live_server, alice, body))

    assert response.status_code == 200, response.text
    assert len(response.json()["00081199"]["Value"]) == 40 and "00081198" not in response.json()
    scan = Scan.objects.get()
    assert (scan.patient, scan.slices.count()) == (known, 40)
    # email.parser held about ten times the body; the stream holds about one instance and its decode
    assert peak < 0.4 * size, f"{peak / MB:.1f} MB held for a {size / MB:.0f} MB body"
    print(f"STOW-RS of {size / MB:.0f} MB (40 instances of 1024x1024): peak {peak / MB:.1f} MB")


def with_uids(data: bytes, **values: Any) -> bytes:
    ds = dcmread(BytesIO(data))
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.mark.django_db(transaction=True)
def test_stow_rs_stores_the_good_instances_and_names_each_refused_one(live_server, alice, known, tmp_path):
    good = ct_series(dataset_slices(2), patient_name="Roe^Jane", series_uid="1.2.826.0.1.3680043.10.1")
    scout = with_uids(
        good[0][1], SOPInstanceUID="1.2.826.0.1.3680043.10.9", ImageType=["ORIGINAL", "LOCALIZER"]
    )
    broken = with_uids(good[1][1], SOPInstanceUID="1.2.826.0.1.3680043.10.7")[:2000]  # cut short
    body = multipart_body(tmp_path / "body", iter([good[0][1], scout, good[1][1], broken]))

    response = stow(live_server, alice, body)

    assert response.status_code == 202 and response.headers["Content-Type"] == "application/dicom+json"
    answer = response.json()
    stored = {item["00081155"]["Value"][0] for item in answer["00081199"]["Value"]}
    assert stored == {dcmread(BytesIO(data)).SOPInstanceUID for _, data in good}
    failed = answer["00081198"]["Value"]
    assert [item["00081197"]["Value"][0] for item in failed] == [0xA900, 0xC000]
    assert failed[0]["00081155"]["Value"] == ["1.2.826.0.1.3680043.10.9"]
    assert "localizer" in response.headers["Warning"] and "cannot be decoded" in response.headers["Warning"]
    scan = Scan.objects.get()
    assert scan.slices.count() == 2 and scan.patient == known


# --- C-STORE: each instance answered with the truth ------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_c_store_answers_a_refused_instance_with_a_failure_and_stores_the_rest(
    router_receiver, known, settings
):
    settings.UPLOAD_MAX_PIXELS = 4096 * 4096
    good = ct_series(dataset_slices(2), patient_name="Roe^Jane")
    study_uid = dcmread(BytesIO(good[0][1])).StudyInstanceUID
    scout = with_uids(
        good[0][1], SOPInstanceUID="1.2.826.0.1.3680043.10.8", ImageType=["ORIGINAL", "LOCALIZER"]
    )
    bomb = rle_bomb(8192, study_uid=study_uid, patient_name="Roe^Jane")  # a series of its own
    ae = AE(ae_title="CT-ROUTER")
    for syntax in (ExplicitVRLittleEndian, RLELossless):  # one context each: the SCP accepts both
        ae.add_requested_context(CTImageStorage, syntax)
    assoc = ae.associate("127.0.0.1", router_receiver, ae_title="LUNGPORTAL")
    assert assoc.is_established
    statuses = []
    for data in (good[0][1], scout, bomb, good[1][1]):
        status = assoc.send_c_store(dcmread(BytesIO(data)))
        statuses.append((status.Status, str(status.get("ErrorComment", ""))))
    assoc.release()

    assert [code for code, _ in statuses] == [0x0000, 0xA900, 0xA700, 0x0000]
    assert "localizer" in statuses[1][1] and "megapixels" in statuses[2][1]
    assert all(len(comment) <= 64 for _, comment in statuses)
    wait_for(lambda: Scan.objects.exists(), timeout=60, message="the accepted instances stored")
    scan = Scan.objects.get()
    assert scan.slices.count() == 2 and scan.patient == known and scan.received_via == "cstore"
    assert Patient.objects.count() == 1


# --- what a real PACS hears: Orthanc's STOW-RS client ----------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_orthanc_sending_a_study_with_a_refused_series_is_told_how_many_were_kept(
    orthanc,  # noqa: F811
    live_server,
    alice,
    known,
):
    study_uid = "1.2.826.0.1.3680043.10.55"
    good = ct_series(dataset_slices(2), study_uid=study_uid, patient_name="Roe^Jane")
    mr = ct_series(dataset_slices(1), study_uid=study_uid, modality="MR", patient_name="Roe^Jane")
    for _, data in good + mr:
        orthanc.upload(data)
    token = AuthToken.objects.create(alice)[1]
    orthanc.dicomweb_server_put(
        "portal", url=f"{live_server.url}/dicomweb/", headers={"Authorization": f"Token {token}"}
    )

    job = orthanc.ok(
        orthanc.post(
            "dicom-web/servers/portal/stow",
            json={"Resources": [orthanc.study_id(study_uid)], "Synchronous": False},
        )
    )["ID"]
    wait_for(
        lambda: orthanc.ok(orthanc.get(f"jobs/{job}"))["State"] in ("Success", "Failure"),
        timeout=60,
        message=orthanc.log_tail(),
    )

    # Orthanc 1.10's client reads the PS3.18 answer (202): it reports the count we kept, not a
    # protocol error; the reasons themselves are in the answer, which its job log does not show.
    details = orthanc.ok(orthanc.get(f"jobs/{job}"))["Content"]
    assert (
        details["FunctionErrorDetails"] == "The STOW-RS server was only able to receive 2 instances out of 3"
    )
    scan = Scan.objects.get()
    assert (scan.patient, scan.slices.count()) == (known, 2)


def test_an_implausible_study_date_is_refused_before_the_sender_is_answered():
    [(name, data)] = ct_series([np.zeros((64, 64), dtype=np.uint8)], study_date="20990101")

    with pytest.raises(DicomRefused) as caught:
        read_series([(name, data)], max_slices=1)

    assert str(caught.value).startswith("IM0001.dcm: its StudyDate (2099-01-01) is not a plausible date")
    assert caught.value.failure == Failure.NOT_THIS_SOP_CLASS


@pytest.mark.skipif(shutil.which("storescu") is None, reason="dcmtk's storescu is not installed")
@pytest.mark.django_db(transaction=True)
def test_dcmtk_storescu_hears_which_instance_was_refused(router_receiver, known, tmp_path):
    good = ct_series(dataset_slices(2), patient_name="Roe^Jane")
    scout = with_uids(
        good[0][1], SOPInstanceUID="1.2.826.0.1.3680043.10.6", ImageType=["ORIGINAL", "LOCALIZER"]
    )
    for name, data in [*good, ("SCOUT.dcm", scout)]:
        (tmp_path / name).write_bytes(data)

    result = subprocess.run(
        [
            "storescu",
            "-v",
            "--no-halt",
            "-aet",
            "CT-ROUTER",
            "-aec",
            "LUNGPORTAL",
            "127.0.0.1",
            str(router_receiver),
        ]
        + [str(tmp_path / name) for name in ("IM0001.dcm", "SCOUT.dcm", "IM0002.dcm")],
        capture_output=True,
        text=True,
        timeout=60,
    )

    said = result.stdout + result.stderr
    responses = [line for line in said.splitlines() if "Received Store Response" in line]
    assert responses == [
        "I: Received Store Response (Success)",
        "I: Received Store Response (Error: DataSetDoesNotMatchSOPClass)",
        "I: Received Store Response (Success)",
    ], said
    wait_for(lambda: Scan.objects.exists(), timeout=60, message="the accepted instances stored")
    assert Scan.objects.get().slices.count() == 2


def test_a_jpeg_2000_stream_larger_than_its_header_says_is_refused_without_decoding():
    """Rows/Columns say 512×512; the codestream inside says 4096×4096 (32 MiB decoded, 168 bytes)."""
    import openjpeg
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless

    [(_, small)] = ct_series([np.zeros((512, 512), dtype=np.uint8)])
    ds = dcmread(BytesIO(small))
    ds.PixelData = encapsulate([openjpeg.encode(np.zeros((4096, 4096), dtype=np.uint16))])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    crafted = buffer.getvalue()

    refusal, peak = refused_holding([("crafted.dcm", crafted)])

    assert refusal is not None
    assert str(refusal).startswith(
        "crafted.dcm: its compressed image is 4096x4096 pixels with 1 component(s)"
    )
    assert peak < 4 * MB, f"{peak / MB:.1f} MB held: the stream was decoded"


# --- what C-STORE answered Success is kept, however the association ends ---------------------------


@pytest.mark.django_db(transaction=True)
def test_instances_answered_success_are_stored_when_the_association_is_aborted(
    router_receiver, known, settings
):
    files = ct_series(dataset_slices(2), patient_name="Roe^Jane")
    ae = AE(ae_title="CT-ROUTER")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", router_receiver, ae_title="LUNGPORTAL")
    statuses = [assoc.send_c_store(dcmread(BytesIO(data))).Status for _, data in files]
    assoc.abort()

    assert statuses == [0x0000, 0x0000]
    wait_for(lambda: Scan.objects.exists(), timeout=60, message="the answered instances stored")
    assert Scan.objects.get().slices.count() == 2
    wait_for(lambda: not any(Path(settings.DICOM_INBOX_DIR).iterdir()), timeout=30, message="inbox emptied")


@pytest.mark.django_db(transaction=True)
def test_an_inbox_left_by_a_crash_is_stored_when_the_receiver_starts(known, team_a, settings):
    from pacs.inbox import InboxFolder

    node = DicomNode.objects.create(team=team_a, ae_title="CT-ROUTER", addresses="127.0.0.0/8")
    folder = InboxFolder.create(node_id=node.pk, ae_title="CT-ROUTER")
    for number, (_, data) in enumerate(ct_series(dataset_slices(2), patient_name="Roe^Jane"), start=1):
        (folder.path / f"{number:05d}.dcm").write_bytes(data)
    assert oct(folder.path.stat().st_mode & 0o777) == "0o700"

    settings.DICOM_PORT = free_port()
    server = Receiver().serve(block=False)
    try:
        wait_for(lambda: Scan.objects.exists(), timeout=60, message="the left inbox stored")
    finally:
        server.shutdown()

    scan = Scan.objects.get()
    assert (scan.patient, scan.received_via, scan.slices.count()) == (known, "cstore", 2)
    wait_for(lambda: not folder.path.exists(), timeout=30, message="the stored folder removed")
