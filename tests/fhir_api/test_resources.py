"""Every resource type, in every state, validates against the FHIR R4 (R4B, 4.3) models of
fhir.resources, and says what the record says."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import TestCase
from django.utils import timezone
from fhir.resources.R4B import get_fhir_model_class

from cases.models import Study
from cases.services import ReportConflict
from fhir_api import builders, reads
from fhir_api.capability import capability_statement
from inference.models import ModelVersion
from pacs.ingest import study_upload
from pacs.synthetic import ct_series
from tests.fhir_api.studies import dicom_study
from tests.reading.studies import sign, study

pytestmark = pytest.mark.django_db


def valid(resource):
    """The resource, after fhir.resources has validated it (unknown fields are refused too)."""
    model = get_fhir_model_class(resource["resourceType"])
    model.model_validate(resource)
    return resource


def read(user, resource_type, logical_id):
    return valid(reads.read(user, resource_type, logical_id)[0])


@pytest.fixture
def dicom_scan(alice, patient):
    patient.mrn = "P-1"
    patient.save()
    images = [np.full((64, 64), 40 * i, dtype=np.uint8) for i in range(3)]
    files = ct_series(images, patient_id="P-1", accession="A-77", study_date="20261102", series_number=4)
    uploads = [SimpleUploadedFile(name, data, content_type="application/dicom") for name, data in files]
    with TestCase.captureOnCommitCallbacks(execute=False):
        return study_upload(patient=patient, files=uploads, uploaded_by=alice)[0]


def test_patient_names_its_mrn_under_the_configured_system(alice, patient, settings):
    settings.FHIR_MRN_SYSTEM = "https://hospital.example/mrn"
    resource = read(alice, "Patient", str(patient.pk))
    assert resource["identifier"][0]["system"] == "https://hospital.example/mrn"
    assert resource["identifier"][0]["value"] == patient.mrn
    assert resource["identifier"][0]["type"]["coding"][0]["code"] == "MR"
    assert resource["birthDate"] == patient.birth_date.isoformat()
    assert resource["name"][0]["text"] == patient.name


def test_imaging_study_of_an_image_upload_is_one_series_with_a_generated_uid(alice, patient):
    scan = study(patient, alice, suspicion=0.8, slices=3)
    resource = read(alice, "ImagingStudy", str(scan.study_id))
    assert resource["id"] == str(scan.study_id)
    assert (resource["numberOfSeries"], resource["numberOfInstances"]) == (1, 3)
    assert "identifier" not in resource  # no DICOM UID, no accession number
    (series,) = resource["series"]
    assert series["uid"].startswith("2.25.") and series["numberOfInstances"] == 3
    assert series["modality"] == {"system": builders.DICOM_MODALITY, "code": "CT"}
    assert "instance" not in series  # JPEG/PNG slices have no SOP Instance UIDs
    assert read(alice, "ImagingStudy", str(scan.study_id))["series"][0]["uid"] == series["uid"]  # stable
    assert resource["subject"]["reference"] == f"Patient/{patient.pk}"
    assert resource["started"] == "2026-11-01"


def test_imaging_study_of_a_dicom_series_carries_its_uids(alice, dicom_scan):
    resource = read(alice, "ImagingStudy", str(dicom_scan.study_id))
    assert resource["identifier"][0] == {
        "system": "urn:dicom:uid",
        "value": f"urn:oid:{dicom_scan.study_instance_uid}",
    }
    assert resource["identifier"][1]["value"] == "A-77"
    assert resource["identifier"][1]["type"]["coding"][0]["code"] == "ACSN"
    assert resource["modality"] == [{"system": builders.DICOM_MODALITY, "code": "CT"}]
    (series,) = resource["series"]
    assert series["uid"] == dicom_scan.series_instance_uid and series["number"] == 4
    assert series["numberOfInstances"] == 3 == resource["numberOfInstances"]
    slices = list(dicom_scan.slices.order_by("position"))
    assert [i["uid"] for i in series["instance"]] == [s.sop_instance_uid for s in slices]
    assert series["instance"][0]["sopClass"]["code"] == f"urn:oid:{slices[0].sop_class_uid}"
    # StudyDate and StudyTime (10:15:00), the time in the portal's zone.
    assert resource["started"] == "2026-11-02T10:15:00+00:00"


def test_two_series_of_one_dicom_study_are_one_imaging_study_with_both(alice, patient, settings):
    settings.TIME_ZONE = "Europe/Berlin"
    lung, mediastinum = dicom_study(patient, alice, sizes=(3, 2), study_uid="1.2.826.0.1.77")
    assert lung.study_id == mediastinum.study_id
    Study.objects.filter(pk=lung.study_id).update(description="CT CHEST")

    resource = read(alice, "ImagingStudy", str(lung.study_id))

    assert resource["identifier"][0]["value"] == "urn:oid:1.2.826.0.1.77"
    assert resource["identifier"][1]["value"] == "A-78"
    assert (resource["numberOfSeries"], resource["numberOfInstances"]) == (2, 5)
    assert resource["description"] == "CT CHEST"
    assert resource["started"] == "2026-11-02T10:15:00+01:00"  # StudyTime in the portal's zone
    assert [s["uid"] for s in resource["series"]] == [
        lung.series_instance_uid,
        mediastinum.series_instance_uid,
    ]
    assert [(s["number"], s["description"]) for s in resource["series"]] == [
        (2, "CHEST SERIES 2"),
        (3, "CHEST SERIES 3"),
    ]
    assert [s["numberOfInstances"] for s in resource["series"]] == [3, 2]
    for scan, series in zip((lung, mediastinum), resource["series"], strict=True):
        assert [i["uid"] for i in series["instance"]] == list(
            scan.slices.order_by("position").values_list("sop_instance_uid", flat=True)
        )


def test_the_ai_report_is_preliminary_with_conclusion_model_and_performance(alice, patient):
    scan = study(patient, alice, suspicion=0.9)
    prediction = scan.predictions.get()
    report = read(alice, "DiagnosticReport", f"prediction-{prediction.pk}")
    assert report["status"] == "preliminary"
    assert report["conclusion"].startswith("Suspicious for malignancy.")
    assert report["conclusionCode"][0]["coding"][0] == {
        "system": builders.LABEL_SYSTEM,
        "code": "malignant",
        "display": "Malignant",
    }
    assert report["subject"]["identifier"] == {"system": "urn:lungportal:mrn", "value": patient.mrn}
    version = prediction.model_version
    extensions = {e["url"]: e for e in report["extension"]}
    assert (
        extensions[builders.MODEL_VERSION_EXTENSION]["valueReference"]["reference"] == f"Device/{version.pk}"
    )
    performance = {
        e["url"]: e.get("valueDecimal", e.get("valueString"))
        for e in extensions[builders.MODEL_PERFORMANCE_EXTENSION]["extension"]
    }
    assert performance["malignant_sensitivity"] == version.metrics["malignant_sensitivity"]
    assert performance["source"] == version.metrics["source"]
    assert "malignant sensitivity" in report["text"]["div"]
    assert [r["reference"] for r in report["result"]] == [
        f"Observation/prediction-{prediction.pk}-{kind}"
        for kind in ("suspicion", "normal", "benign", "malignant")
    ]
    assert report["imagingStudy"] == [{"reference": f"ImagingStudy/{scan.study_id}"}]


def test_a_study_with_no_assessable_slice_has_a_report_without_results(alice, patient):
    prediction = study(patient, alice, suspicion=None).predictions.get()
    report = read(alice, "DiagnosticReport", f"prediction-{prediction.pk}")
    assert report["status"] == "preliminary" and "result" not in report and "conclusionCode" not in report
    assert report["conclusion"] == "No slice of this study could be assessed."


def test_a_sign_off_is_final_and_a_correction_amended_and_the_first_stays_as_signed(alice, bob, patient):
    scan = study(patient, alice, suspicion=0.9)
    first = sign(scan, alice, "malignant", comment="Spiculated nodule.")
    correction = sign(scan, alice, "benign", amends=first, comment="Old granuloma on review.")
    signed = read(alice, "DiagnosticReport", f"review-{first.pk}")
    amended = read(alice, "DiagnosticReport", f"review-{correction.pk}")
    assert signed["status"] == "final" and amended["status"] == "amended"
    assert signed["conclusion"] == "Malignant; the reader agrees with the AI result. Spiculated nodule."
    assert amended["conclusion"].startswith("Benign; the reader corrects the AI result (Malignant).")
    assert amended["conclusionCode"][0]["coding"][0]["code"] == "benign"
    replaces = [e for e in amended["extension"] if e["url"] == builders.REPLACES_EXTENSION]
    assert replaces[0]["valueReference"]["reference"] == f"DiagnosticReport/review-{first.pk}"
    ai = [e for e in amended["extension"] if e["url"] == builders.AI_REPORT_EXTENSION]
    assert ai[0]["valueReference"]["reference"] == f"DiagnosticReport/prediction-{scan.predictions.get().pk}"
    assert amended["performer"][0]["identifier"]["value"] == "alice"
    assert any(e["url"] == builders.MODEL_PERFORMANCE_EXTENSION for e in amended["extension"])
    # One report per study (issue 21): a colleague's signature of another final report is refused.
    with pytest.raises(ReportConflict):
        sign(scan, bob, "malignant")


def test_observations_give_the_suspicion_and_each_class_probability(alice, patient):
    prediction = study(patient, alice, suspicion=0.75).predictions.get()
    suspicion = read(alice, "Observation", f"prediction-{prediction.pk}-suspicion")
    assert suspicion["valueQuantity"]["value"] == 0.75 and suspicion["valueQuantity"]["code"] == "1"
    assert suspicion["code"]["coding"][0]["code"] == "malignancy-suspicion"
    assert suspicion["device"]["reference"] == f"Device/{prediction.model_version_id}"
    assert suspicion["derivedFrom"] == [{"reference": f"ImagingStudy/{prediction.scan.study_id}"}]
    values = {
        kind: read(alice, "Observation", f"prediction-{prediction.pk}-{kind}")["valueQuantity"]["value"]
        for kind in ("normal", "benign", "malignant")
    }
    assert values == pytest.approx({"normal": 0.05, "benign": 0.2, "malignant": 0.75})


@pytest.mark.parametrize("active", [True, False])
def test_device_is_a_model_version_with_its_measured_performance(alice, patient, active):
    version = study(patient, alice, suspicion=0.2).predictions.get().model_version
    ModelVersion.objects.filter(pk=version.pk).update(is_active=active)
    device = read(alice, "Device", str(version.pk))
    assert device["status"] == ("active" if active else "inactive")
    assert device["deviceName"] == [{"name": version.name, "type": "model-name"}]
    properties = {p["type"]["coding"][0]["code"]: p["valueQuantity"][0]["value"] for p in device["property"]}
    assert properties["specificity"] == version.metrics["specificity"]


def test_device_without_metrics(alice):
    version = ModelVersion.objects.create(name="bare", sha256="b" * 64, weights_dir="x", metrics={})
    device = valid(builders.device_resource(version))
    assert "property" not in device and "note" not in device


def test_bundle_capability_statement_and_operation_outcome_validate(alice, patient):
    entries = [("http://testserver/fhir/Patient/1", builders.patient_resource(patient))]
    links = {"self": "http://testserver/fhir/Patient?_count=1&_offset=0"}
    assert valid(builders.searchset(total=3, entries=entries, links=links))["total"] == 3
    assert valid(builders.searchset(total=0, entries=[], links=links))["entry"] == []
    statement = valid(capability_statement("http://testserver/fhir/"))
    types = {r["type"] for r in statement["rest"][0]["resource"]}
    assert types == {"Patient", "ImagingStudy", "DiagnosticReport", "Observation", "Device"}
    valid(builders.operation_outcome("not-found", "No such resource."))


def test_instants_are_utc_to_the_millisecond():
    moment = datetime(2026, 11, 27, 12, 0, 1, 234567, tzinfo=timezone.get_fixed_timezone(60))
    assert builders.instant(moment) == "2026-11-27T11:00:01.234Z"
