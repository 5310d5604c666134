"""DICOM by hand: .dcm files or a zip of them through the upload page and the API; one scan per
series with its header, Hounsfield units kept for the viewer, the model's input windowed; a
series of another patient refused unless confirmed; nothing half-stored on any refusal."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image
from pydicom.uid import RLELossless
from rest_framework.test import APIClient

from cases.models import Prediction, Scan, Slice
from cases.viewer import viewer_data
from tests.pacs.series import ct_series, dataset_slices, grey_to_hounsfield, jpeg_grey

pytestmark = pytest.mark.django_db


@pytest.fixture
def mrn_patient(patient):
    patient.mrn = "P-1"
    patient.save()
    return patient


def dicom_uploads(files):
    return [SimpleUploadedFile(name, data, content_type="application/dicom") for name, data in files]


def zipped(files, name="study.zip"):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for number, (entry, data) in enumerate(files):
            archive.writestr(f"series/{number:03d}-{entry}", data)
    return SimpleUploadedFile(name, buffer.getvalue(), content_type="application/zip")


def api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def upload_api(user, patient, files, **fields):
    return api(user).post(
        reverse("api:patient-scans", args=[patient.pk]), {"files": files, **fields}, format="multipart"
    )


def test_a_shuffled_series_becomes_one_ordered_scan_with_its_header(
    alice, mrn_patient, django_capture_on_commit_callbacks
):
    paths = dataset_slices(4)
    files = ct_series(paths, shuffle=True, study_date="20261102", accession="A-77", slice_thickness=2.5)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = upload_api(alice, mrn_patient, dicom_uploads(files))
    assert response.status_code == 202, response.json()
    assert len(queued) == 2  # the prediction sent and the outbox event dispatched after the commit
    scan = Scan.objects.get()
    dicom = response.json()["scan"]["dicom"]
    assert dicom["accession_number"] == "A-77" and dicom["slice_thickness"] == 2.5
    assert (
        dicom["dicom_patient_id"] == "P-1" and dicom["modality"] == "CT" and dicom["received_via"] == "upload"
    )
    assert (dicom["window_center"], dicom["window_width"], dicom["window_source"]) == (40.0, 400.0, "file")
    assert str(scan.study_date) == "2026-11-02" and scan.dicom_patient_name == "Jane Roe"
    slices = list(scan.slices.order_by("position"))
    assert [s.instance_number for s in slices] == [1, 2, 3, 4]  # by ImagePositionPatient, not arrival
    assert [s.location for s in slices] == sorted(s.location or 0.0 for s in slices)
    # The model's input is the file's window over the HU: the dataset's own grey pixels come back.
    for item, path in zip(slices, paths, strict=True):
        with item.image.open("rb") as handle:
            stored = np.asarray(Image.open(handle))
        assert np.abs(stored.astype(int) - jpeg_grey(path).astype(int)).max() <= 1
    assert Prediction.objects.get(scan=scan).status == "queued"


def test_hounsfield_units_are_served_to_the_viewer_exactly(client, alice, mrn_patient):
    hounsfield = np.linspace(-1024, 1500, 64 * 64).astype(np.int16).reshape(64, 64)
    files = ct_series([hounsfield, hounsfield], window=None)
    assert upload_api(alice, mrn_patient, dicom_uploads(files)).status_code == 202
    scan = Scan.objects.get()
    item = scan.slices.get(position=0)
    client.force_login(alice)
    response = client.get(reverse("cases:slice_hounsfield", args=[item.pk]))
    assert response.status_code == 200 and response["Content-Type"] == "application/octet-stream"
    values = np.frombuffer(b"".join(response.streaming_content), dtype="<i2").reshape(64, 64)
    assert np.array_equal(values, hounsfield)
    assert (scan.window_center, scan.window_width, scan.window_source) == (40.0, 400.0, "default")
    data = viewer_data(Scan.objects.prefetch_related("slices").get(pk=scan.pk), None)
    assert data["hounsfield"] is True and data["slices"][0]["values"]["encoding"] == "int16"
    assert api(alice).get(reverse("api:slice-hounsfield", args=[item.pk])).status_code == 200


def test_hounsfield_files_are_scoped_and_checked(client, alice, charlie, mrn_patient):
    files = ct_series([np.zeros((64, 64), dtype=np.int16)], window=None)
    upload_api(alice, mrn_patient, dicom_uploads(files))
    item = Slice.objects.get()
    client.force_login(charlie)
    assert client.get(reverse("cases:slice_hounsfield", args=[item.pk])).status_code == 404
    Slice.objects.filter(pk=item.pk).update(hounsfield_sha256="0" * 64)
    client.force_login(alice)
    assert client.get(reverse("cases:slice_hounsfield", args=[item.pk])).status_code == 409


def test_a_zip_with_two_series_becomes_two_scans_through_the_page(client, alice, mrn_patient):
    first = ct_series(dataset_slices(2), series_number=2)
    second = ct_series(dataset_slices(3, "normal"), series_number=3, transfer_syntax=RLELossless)
    client.force_login(alice)
    response = client.post(
        reverse("cases:scan_upload", args=[mrn_patient.pk]), {"files": [zipped(first + second)]}
    )
    assert response.status_code == 302 and response["Location"] == mrn_patient.get_absolute_url()
    scans = Scan.objects.order_by("series_number")
    assert [(s.series_number, s.slices.count()) for s in scans] == [(2, 2), (3, 3)]
    assert Prediction.objects.filter(scan__in=scans, status="queued").count() == 2
    page = client.get(scans[0].get_absolute_url()).content.decode()
    assert "DICOM series" in page and "A-77" not in page and scans[0].series_instance_uid in page


def test_another_patients_series_is_refused_until_confirmed(client, alice, mrn_patient):
    files = ct_series(dataset_slices(1), patient_id="SOMEONE-ELSE")
    response = upload_api(alice, mrn_patient, dicom_uploads(files))
    assert response.status_code == 400
    assert "SOMEONE-ELSE" in response.json()["errors"]["confirm_patient"][0] and not Scan.objects.exists()
    confirmed = upload_api(alice, mrn_patient, dicom_uploads(files), confirm_patient="true")
    assert confirmed.status_code == 202 and Scan.objects.get().dicom_patient_id == "SOMEONE-ELSE"
    client.force_login(alice)
    page = client.get(Scan.objects.get().get_absolute_url()).content.decode()
    assert "differs from the MRN" in page


@pytest.mark.parametrize(
    "case,message",
    [
        ("mixed", "not both"),
        ("not_ct", "CT"),
        ("broken", "IM0002.dcm"),
        ("traversal", ".."),
    ],
)
def test_refusals_store_nothing_and_say_why(alice, mrn_patient, private_media, case, message):
    good = ct_series(dataset_slices(2))
    if case == "mixed":
        files = [*dicom_uploads(good), SimpleUploadedFile("a.png", _png(), content_type="image/png")]
    elif case == "not_ct":
        files = dicom_uploads(ct_series(dataset_slices(1), modality="MR"))
    elif case == "broken":
        files = dicom_uploads([good[0], (good[1][0], good[1][1][:2000])])
    else:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("../evil.dcm", good[0][1])
        files = [SimpleUploadedFile("bad.zip", buffer.getvalue(), content_type="application/zip")]
    response = upload_api(alice, mrn_patient, files)
    assert response.status_code == 400, response.json()
    assert message in " ".join(response.json()["errors"]["files"])
    assert not Scan.objects.exists() and not Slice.objects.exists()
    assert not any(p.is_file() for p in private_media.rglob("*"))  # no file left behind


def test_images_still_upload_as_before(alice, patient):
    response = upload_api(alice, patient, [SimpleUploadedFile("a.png", _png(), content_type="image/png")])
    assert response.status_code == 202 and response.json()["scan"]["dicom"] is None
    assert len(response.json()["scans"]) == 1


def test_a_jpeg_and_the_same_slice_as_dicom_give_the_model_the_same_input(alice, mrn_patient):
    path = dataset_slices(1)[0]
    grey = jpeg_grey(path)
    hounsfield = grey_to_hounsfield(grey, 300.0, 1000.0)  # a window unlike the default
    upload_api(alice, mrn_patient, dicom_uploads(ct_series([hounsfield], window=(300.0, 1000.0))))
    upload_api(
        alice, mrn_patient, [SimpleUploadedFile("a.jpg", path.read_bytes(), content_type="image/jpeg")]
    )
    dicom_slice, jpeg_slice = (
        Scan.objects.get(series_instance_uid__gt="").slices.get(),
        Scan.objects.get(series_instance_uid="").slices.get(),
    )
    from inference.preprocessing import inspect, preprocess

    inputs = []
    for item in (dicom_slice, jpeg_slice):
        with item.image.open("rb") as handle:
            inputs.append(preprocess(inspect(handle.read()).image, size=256))
    assert np.abs(inputs[0] - inputs[1]).max() <= 1 / 255 + 1e-6


def _png():
    buffer = io.BytesIO()
    Image.fromarray(np.tile(np.arange(128, dtype=np.uint8), (128, 1))).save(buffer, format="PNG")
    return buffer.getvalue()


def test_an_upload_past_the_dicom_byte_limit_is_refused(alice, mrn_patient, settings):
    settings.DICOM_MAX_SERIES_BYTES = 600_000  # two 512×512 slices hold ~1 MB
    response = upload_api(alice, mrn_patient, dicom_uploads(ct_series(dataset_slices(2))))
    assert response.status_code == 400 and "send the study in parts" in response.json()["errors"]["files"][0]
    assert not Scan.objects.exists()
