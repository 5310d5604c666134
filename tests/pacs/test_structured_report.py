"""The SR of a finished prediction: where it belongs, what it refers to and what it says."""

from __future__ import annotations

import io
from datetime import date
from typing import Any

import highdicom as hd
import pydicom
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone
from pydicom.sr.codedict import codes
from pydicom.uid import ComprehensiveSRStorage, CTImageStorage, generate_uid

from cases.models import Patient, Prediction, Scan, Slice, SliceResult, Study
from inference.models import ModelVersion
from pacs.structured_report import DISCLAIMER, SERIES_DESCRIPTION, structured_report
from tests.conftest import image_bytes

METRICS = {
    "source": "5-fold patient-grouped cross-validation, out-of-fold, calibrated",
    "malignant_sensitivity": 0.97,
    "specificity": 0.95,
    "malignant_auc": 0.975,
}


def model_version() -> ModelVersion:
    version, _ = ModelVersion.objects.get_or_create(
        name="ensemble-sr-test",
        defaults={"sha256": "ab" * 32, "weights_dir": "inference/weights", "metrics": METRICS},
    )
    return version


def dicom_scan(patient: Patient, *, slices: int = 4, study_instance_uid: str | None = None) -> Scan:
    """A CT series as the receiver stores it: header fields on the scan, one instance per slice."""
    uid = study_instance_uid or generate_uid()
    study = Study.objects.create(patient=patient, study_instance_uid=uid, study_date=date(2026, 3, 2))
    scan = Scan.objects.create(
        patient=patient,
        study=study,
        study_date=date(2026, 3, 2),
        received_via=Scan.Received.STOW,
        modality="CT",
        study_instance_uid=uid,
        series_instance_uid=generate_uid(),
        series_number=3,
        series_description="CHEST 1.25mm",
        accession_number="ACC0042",
        slice_thickness=1.25,
        dicom_patient_id="PID-0042",
        dicom_patient_name="Doe^Jane",
        dicom_birth_date=date(1961, 7, 4),
        dicom_sex="F",
        window_center=-600,
        window_width=1500,
        window_source=Scan.WindowSource.FILE,
    )
    png = image_bytes()
    for position in range(slices):
        name = default_storage.save(f"slices/sr-{scan.pk}-{position}.png", ContentFile(png))
        Slice.objects.create(
            scan=scan,
            position=position,
            image=name,
            thumbnail=name,
            content_type="image/png",
            sha256="0" * 64,
            width=64,
            height=64,
            size_bytes=len(png),
            sop_instance_uid=generate_uid(),
            sop_class_uid=CTImageStorage,
            instance_number=position + 1,
            location=position * 1.25,
        )
    return scan


def finished_prediction(scan: Scan, *, label: str = "malignant", **fields: Any) -> Prediction:
    """A succeeded prediction as a worker leaves it: slice 2 most suspicious, slice 0 not assessable."""
    prediction = Prediction.objects.create(scan=scan, model_version=model_version())
    p_malignant = [None, 0.4, 0.9, 0.7]
    for item, p in zip(scan.slices.all(), p_malignant + [0.1] * 10, strict=False):
        SliceResult.objects.create(
            prediction=prediction,
            slice=item,
            label="" if p is None else "malignant",
            p_normal=None if p is None else (1 - p) / 2,
            p_benign=None if p is None else (1 - p) / 2,
            p_malignant=p,
            assessable=p is not None,
            reason="too little lung in the slice" if p is None else "",
        )
    values = {
        "status": Prediction.Status.SUCCEEDED,
        "label": label,
        "p_normal": 0.1,
        "p_benign": 0.2,
        "p_malignant": 0.7,
        "suspicion": 0.83,
        "suspicious_slices": 2,
        "not_assessable_slices": 1,
        "finding": "Suspicious for malignancy.",
        "finished_at": timezone.now(),
        **fields,
    }
    Prediction.objects.filter(pk=prediction.pk).update(**values)
    prediction.refresh_from_db()
    return prediction


@pytest.fixture
def dicom_prediction(patient):
    return finished_prediction(dicom_scan(patient))


def items(dataset: Any) -> list[Any]:
    """Every content item of the tree, depth first."""
    found = []
    for item in getattr(dataset, "ContentSequence", []):
        found.append(item)
        found.extend(items(item))
    return found


def named(dataset: Any, code: Any) -> list[Any]:
    return [
        item
        for item in items(dataset)
        if item.ConceptNameCodeSequence[0].get(
            "CodeValue", item.ConceptNameCodeSequence[0].get("LongCodeValue")
        )
        == code.value
        and item.ConceptNameCodeSequence[0].CodingSchemeDesignator == code.scheme_designator
    ]


def roundtrip(report: pydicom.Dataset) -> pydicom.Dataset:
    buffer = io.BytesIO()
    report.save_as(buffer, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


def test_report_belongs_to_the_source_study_and_patient(dicom_prediction):
    scan = dicom_prediction.scan
    report = roundtrip(structured_report(dicom_prediction))

    assert report.SOPClassUID == ComprehensiveSRStorage
    assert report.Modality == "SR"
    assert report.StudyInstanceUID == scan.study_instance_uid
    assert report.SeriesInstanceUID not in {scan.series_instance_uid, ""}
    assert report.PatientID == "PID-0042"
    assert str(report.PatientName) == "Doe^Jane"
    assert report.PatientBirthDate == "19610704"
    assert report.PatientSex == "F"
    assert report.AccessionNumber == "ACC0042"
    assert report.StudyDate == "20260302"
    assert report.SeriesDescription == SERIES_DESCRIPTION
    assert report.file_meta.MediaStorageSOPInstanceUID == report.SOPInstanceUID


def test_report_lists_every_source_instance_as_evidence(dicom_prediction):
    scan = dicom_prediction.scan
    report = roundtrip(structured_report(dicom_prediction))

    (study,) = report.CurrentRequestedProcedureEvidenceSequence
    assert study.StudyInstanceUID == scan.study_instance_uid
    (series,) = study.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == scan.series_instance_uid
    assert {
        (ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID) for ref in series.ReferencedSOPSequence
    } == {(CTImageStorage, uid) for uid in scan.slices.values_list("sop_instance_uid", flat=True)}
    assert "PertinentOtherEvidenceSequence" not in report


def test_report_says_it_is_unverified_ai_output(dicom_prediction):
    report = roundtrip(structured_report(dicom_prediction))

    assert report.VerificationFlag == "UNVERIFIED"
    assert report.PreliminaryFlag == "PRELIMINARY"
    assert report.CompletionFlag == "COMPLETE"
    (observer_type,) = named(report, codes.DCM.ObserverType)
    assert observer_type.ConceptCodeSequence[0].CodeValue == codes.DCM.Device.value
    assert [item.TextValue for item in named(report, codes.DCM.Comment)] == [DISCLAIMER]


def test_report_states_the_finding_label_and_probabilities(dicom_prediction):
    report = roundtrip(structured_report(dicom_prediction))
    parsed = hd.sr.srread(io.BytesIO(_bytes(report)))

    assert [item.TextValue for item in named(report, codes.DCM.Finding)] == ["Suspicious for malignancy."]
    (impression,) = named(report, codes.DCM.Impression)
    assert impression.ConceptCodeSequence[0].CodeValue == codes.SCT.Malignant.value
    numbers = {
        item.ConceptNameCodeSequence[0].CodeMeaning: float(item.MeasuredValueSequence[0].NumericValue)
        for item in items(report)
        if item.ValueType == "NUM" and "ContentSequence" not in item
    }
    assert numbers["Probability of cancer"] == pytest.approx(0.83)
    assert numbers["Probability of normal"] == pytest.approx(0.1)
    assert numbers["Probability of benign"] == pytest.approx(0.2)
    assert numbers["Probability of malignant"] == pytest.approx(0.7)
    assert numbers["Number of slices suspicious for malignancy"] == 2
    assert numbers["Number of slices that could not be assessed"] == 1
    assert isinstance(parsed, hd.sr.ComprehensiveSR)


def test_report_names_the_model_and_its_cross_validated_performance(dicom_prediction):
    report = roundtrip(structured_report(dicom_prediction))

    (algorithm,) = named(report, codes.DCM.AlgorithmName)
    assert algorithm.TextValue == "ensemble-sr-test"
    numbers = {
        item.ConceptNameCodeSequence[0].CodeMeaning: float(item.MeasuredValueSequence[0].NumericValue)
        for item in items(report)
        if item.ValueType == "NUM"
    }
    assert numbers["malignant sensitivity"] == pytest.approx(0.97)
    assert numbers["specificity"] == pytest.approx(0.95)
    texts = [item.TextValue for item in items(report) if item.ValueType == "TEXT"]
    assert METRICS["source"] in texts
    scheme = report.CodingSchemeIdentificationSequence[0]
    assert scheme.CodingSchemeDesignator == "99LUNGPORTAL"


def test_most_suspicious_slices_are_referenced_as_images_most_suspicious_first(dicom_prediction):
    scan = dicom_prediction.scan
    report = roundtrip(structured_report(dicom_prediction))

    (key_images,) = named(report, codes.DCM.KeyImages)
    values = [float(item.MeasuredValueSequence[0].NumericValue) for item in key_images.ContentSequence]
    images = [item.ContentSequence[0] for item in key_images.ContentSequence]
    uids = list(scan.slices.order_by("position").values_list("sop_instance_uid", flat=True))
    # Slice 0 could not be assessed: it is not a key image.
    assert values == pytest.approx([0.9, 0.7, 0.4])
    assert [image.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for image in images] == [
        uids[2],
        uids[3],
        uids[1],
    ]
    assert {image.RelationshipType for image in images} == {"INFERRED FROM"}
    assert {image.ValueType for image in images} == {"IMAGE"}


def test_not_malignant_study_is_said_in_words(patient):
    prediction = finished_prediction(
        dicom_scan(patient),
        label="",
        suspicion=0.1,
        suspicious_slices=0,
        finding="No sign of malignancy; benign and normal could not be told apart.",
    )
    report = roundtrip(structured_report(prediction))

    (impression,) = named(report, codes.DCM.Impression)
    assert impression.ValueType == "TEXT"
    assert impression.TextValue == "not malignant"


def test_study_with_no_assessable_slice_has_no_probabilities(patient):
    scan = dicom_scan(patient, slices=1)
    prediction = finished_prediction(
        scan,
        label="",
        p_normal=None,
        p_benign=None,
        p_malignant=None,
        suspicion=None,
        suspicious_slices=None,
        not_assessable_slices=1,
        finding="No slice of this study could be assessed.",
    )
    report = roundtrip(structured_report(prediction))

    assert named(report, codes.DCM.ProbabilityOfCancer) == []
    assert named(report, codes.DCM.KeyImages) == []
    assert [item.TextValue for item in named(report, codes.DCM.Finding)] == [
        "No slice of this study could be assessed."
    ]


def test_given_sop_instance_uid_keeps_the_report_in_the_same_series(dicom_prediction):
    uid = generate_uid()
    first = structured_report(dicom_prediction, sop_instance_uid=uid)
    again = structured_report(dicom_prediction, sop_instance_uid=uid)

    assert first.SOPInstanceUID == again.SOPInstanceUID == uid
    assert first.SeriesInstanceUID == again.SeriesInstanceUID


def test_uploaded_image_study_has_no_report(slice_result):
    prediction = slice_result.prediction
    prediction.refresh_from_db()

    with pytest.raises(ValueError, match="not received as a DICOM series"):
        structured_report(prediction)


def test_unfinished_prediction_has_no_report(patient):
    prediction = Prediction.objects.create(scan=dicom_scan(patient), model_version=model_version())

    with pytest.raises(ValueError, match="only a succeeded prediction"):
        structured_report(prediction)


def _bytes(report: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    report.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
