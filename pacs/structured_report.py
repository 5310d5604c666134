"""A finished prediction as a DICOM Comprehensive SR: what goes back to the PACS and the API's
download.

The report sits in the source study (same patient and study attributes, a new series), lists the
classified series as evidence, and says in its content that it is a device's output, not a
clinician's reading: the observer is a device, the document is unverified and preliminary, and a
comment says so in words.

The content tree follows the shape of a basic diagnostic imaging report (Findings and Impressions
sections) without claiming a template, because it also carries numbers (probabilities, slice
counts, the model's measured performance) that a strict TID 2000 has no place for. Concepts come
from DCM, SCT, LN and UCUM where one fits; the rest use a private coding scheme, declared in the
Coding Scheme Identification Sequence.
"""

from __future__ import annotations

import copy
import datetime
from collections.abc import Sequence
from typing import Any

import highdicom as hd
from django.utils import timezone
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import UID, CTImageStorage, generate_uid
from pydicom.valuerep import DA, TM

from cases.models import Prediction, Scan, SliceResult

MANUFACTURER = "LungPortal"
SERIES_NUMBER = 9801  # far from scanners' own series numbers, so that it sorts last in a viewer
SERIES_DESCRIPTION = "LungPortal AI result - not a clinician's reading"
MOST_SUSPICIOUS_SLICES = 5  # key images referenced in the report
DISCLAIMER = (
    "This report is the output of an AI model (LungPortal), not a clinician's reading. It has not "
    "been verified and must be interpreted by a qualified clinician together with the images."
)

# Concepts no public coding scheme has: a private scheme ("99" prefix, PS3.16 8.2).
SCHEME = "99LUNGPORTAL"
SCHEME_NAME = "LungPortal local concepts"
NOT_MALIGNANT = "not malignant"


def _local(value: str, meaning: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value, SCHEME, meaning)


PROBABILITY_OF = {
    "normal": _local("P-NORMAL", "Probability of normal"),
    "benign": _local("P-BENIGN", "Probability of benign"),
    "malignant": _local("P-MALIGNANT", "Probability of malignant"),
}
SUSPICIOUS_SLICES = _local("N-SUSPICIOUS", "Number of slices suspicious for malignancy")
NOT_ASSESSABLE_SLICES = _local("N-NOT-ASSESSABLE", "Number of slices that could not be assessed")
MODEL_PERFORMANCE = _local("MODEL-PERF", "Measured performance of the model")
PERFORMANCE_METHOD = _local("PERF-METHOD", "How the performance was measured")
LABEL_CODES = {
    "malignant": codes.SCT.Malignant,
    "benign": codes.SCT.Benign,
    "normal": codes.SCT.Normal,
}
UNITLESS = codes.UCUM.NoUnits
SLICES = hd.sr.CodedConcept("{slices}", "UCUM", "slices")


def structured_report(prediction: Prediction, *, sop_instance_uid: str | None = None) -> Dataset:
    """The SR of a succeeded prediction of a DICOM series.

    `sop_instance_uid` is the report's identity at the PACS: pass the one stored on its
    `ResultExport`, so that a report sent again replaces itself rather than adding a copy (the
    series UID is derived from it for the same reason). Without one a fresh UID is used.

    Raises ValueError for a prediction that has not succeeded or a scan that is not a DICOM series
    (an uploaded JPEG/PNG study has no study or instances for the report to belong to).
    """
    scan = prediction.scan
    if prediction.status != Prediction.Status.SUCCEEDED:
        raise ValueError(
            f"prediction {prediction.pk} is {prediction.status}: only a succeeded prediction has a report"
        )
    if not scan.is_dicom:
        raise ValueError(
            f"scan {scan.pk} was uploaded as images, not received as a DICOM series: a structured "
            "report needs the source study and instances to refer to"
        )
    slices = [item for item in scan.slices.all() if item.sop_instance_uid]
    if not slices:
        raise ValueError(f"scan {scan.pk} has no DICOM instances (no SOP Instance UIDs) to refer to")
    source = _source(scan)
    checked = _acceptable_to_highdicom(source)
    evidence = {
        item.pk: _evidence(scan, checked, item.sop_instance_uid, item.sop_class_uid) for item in slices
    }

    sop_instance_uid = sop_instance_uid or generate_uid()
    finished = timezone.localtime(prediction.finished_at or timezone.now())
    report = hd.sr.ComprehensiveSR(
        evidence=list(evidence.values()),
        content=_content(prediction, evidence),
        series_instance_uid=generate_uid(entropy_srcs=[sop_instance_uid, "series"]),
        series_number=SERIES_NUMBER,
        sop_instance_uid=sop_instance_uid,
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=False,  # a clinician's review makes it final, not the model
        is_verified=False,
        series_description=SERIES_DESCRIPTION,
        content_date=finished.date(),
        content_time=finished.time().replace(tzinfo=None),
        specific_character_set=None,  # the source's, below: highdicom refuses some valid ones
    )
    # highdicom copies the patient and study from the evidence but checks a few values on the way
    # (it refuses a valid character set such as ['', 'ISO 2022 IR 87'], and dates, times or a sex
    # a scanner got wrong), so the source's elements go back in as received: a PACS files the report
    # with its study, and a consistency check passes, only where they are the same.
    report.update(copy.deepcopy(source))
    scheme = Dataset()
    scheme.CodingSchemeDesignator = SCHEME
    scheme.CodingSchemeName = SCHEME_NAME
    scheme.CodingSchemeResponsibleOrganization = MANUFACTURER
    report.CodingSchemeIdentificationSequence = [scheme]
    return report


def _evidence(scan: Scan, source: Dataset, sop_instance_uid: str, sop_class_uid: str) -> Dataset:
    """What the PACS knows of one source instance: identity, patient and study."""
    ds = copy.deepcopy(source)
    ds.SOPClassUID = UID(sop_class_uid or CTImageStorage)
    ds.SOPInstanceUID = UID(sop_instance_uid)
    ds.SeriesInstanceUID = UID(scan.series_instance_uid)
    return ds


def _source(scan: Scan) -> Dataset:
    """The source's Patient and General Study attributes as received (the PACS files the report
    under these, not under our record); rebuilt from the record for scans stored before they were
    kept. The report's type 2 attributes the source lacked are empty, never ours (an upload's date
    is not the study's)."""
    if not scan.dicom_source_attributes:
        return _rebuilt(scan)
    ds = Dataset.from_json(scan.dicom_source_attributes)
    if "StudyInstanceUID" not in ds:
        ds.StudyInstanceUID = UID(scan.study_instance_uid)
    for keyword in _TYPE_2:
        if keyword not in ds:
            setattr(ds, keyword, "")
    return ds


# The SR's Patient and General Study attributes that must be there, if empty (PS3.3 C.7.1.1, C.7.2.1).
_TYPE_2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "ReferringPhysicianName",
    "AccessionNumber",
)


def _rebuilt(scan: Scan) -> Dataset:
    patient = scan.patient
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"  # our record is Unicode: names need not be ASCII
    ds.StudyInstanceUID = UID(scan.study_instance_uid)
    ds.PatientID = scan.dicom_patient_id or patient.mrn
    ds.PatientName = scan.dicom_patient_name or patient.name
    ds.PatientBirthDate = _da(scan.dicom_birth_date or patient.birth_date)
    ds.PatientSex = scan.dicom_sex or (patient.sex if patient.sex in {"F", "M", "O"} else "")
    ds.AccessionNumber = scan.accession_number
    ds.StudyID = ""
    ds.StudyDate = _da(scan.study_date)
    ds.StudyTime = ""
    ds.ReferringPhysicianName = ""
    return ds


def _acceptable_to_highdicom(source: Dataset) -> Dataset:
    """The source with the values highdicom's SR would refuse emptied (the report gets the source's
    elements back afterwards), so that an odd header never stops the report."""
    ds = copy.deepcopy(source)
    for keyword, kind in (("PatientBirthDate", DA), ("StudyDate", DA), ("StudyTime", TM)):
        try:
            kind(str(ds.get(keyword) or ""))
        except ValueError:
            setattr(ds, keyword, "")
    if str(ds.get("PatientSex") or "") not in {"F", "M", "O", ""}:
        ds.PatientSex = ""
    return ds


def _da(value: datetime.date | None) -> str:
    return value.strftime("%Y%m%d") if value else ""


def _container(name: Any, children: Sequence[hd.sr.ContentItem]) -> hd.sr.ContainerContentItem:
    item = hd.sr.ContainerContentItem(name=name, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
    item.ContentSequence = hd.sr.ContentSequence(children)
    return item


def _num(name: Any, value: float, unit: Any) -> hd.sr.NumContentItem:
    return hd.sr.NumContentItem(
        name=name, value=value, unit=unit, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )


def _text(name: Any, value: str) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(
        name=name, value=value, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )


def _content(prediction: Prediction, evidence: dict[int, Dataset]) -> hd.sr.ContainerContentItem:
    version = prediction.model_version
    device = hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=generate_uid(entropy_srcs=[MANUFACTURER, version.sha256]),
                name=MANUFACTURER,
                manufacturer_name=MANUFACTURER,
                model_name=version.name[:64],
            ),
        )
    )
    root = hd.sr.ContainerContentItem(name=codes.LN.DiagnosticImagingReport)
    root.ContentSequence = hd.sr.ContentSequence(
        [
            *hd.sr.LanguageOfContentItemAndDescendants(hd.sr.templates.DEFAULT_LANGUAGE),
            *device,
            _text(codes.DCM.Comment, DISCLAIMER),
            _findings(prediction, evidence),
            _impressions(prediction),
        ],
        is_root=False,
    )
    return root


def _findings(prediction: Prediction, evidence: dict[int, Dataset]) -> hd.sr.ContainerContentItem:
    items: list[hd.sr.ContentItem] = [_text(codes.DCM.Finding, prediction.finding)]
    for name, concept in PROBABILITY_OF.items():
        value = getattr(prediction, f"p_{name}")
        if value is not None:  # none when no slice could be assessed
            items.append(_num(concept, value, UNITLESS))
    if prediction.suspicious_slices is not None:
        items.append(_num(SUSPICIOUS_SLICES, prediction.suspicious_slices, SLICES))
    items.append(_num(NOT_ASSESSABLE_SLICES, prediction.not_assessable_slices, SLICES))
    key_images = [
        _slice_suspicion(result, evidence[result.slice_id])
        for result in prediction.most_suspicious_first[:MOST_SUSPICIOUS_SLICES]
        if result.slice_id in evidence
    ]
    if key_images:
        items.append(_container(codes.DCM.KeyImages, key_images))
    return _container(codes.DCM.Findings, items)


def _slice_suspicion(result: SliceResult, instance: Dataset) -> hd.sr.NumContentItem:
    """A most suspicious slice: its probability of malignancy, inferred from the image."""
    item = _num(codes.DCM.ProbabilityOfCancer, result.p_malignant or 0.0, UNITLESS)
    item.ContentSequence = hd.sr.ContentSequence(
        [
            hd.sr.ImageContentItem(
                name=codes.DCM.SourceOfMeasurement,
                referenced_sop_class_uid=instance.SOPClassUID,
                referenced_sop_instance_uid=instance.SOPInstanceUID,
                relationship_type=hd.sr.RelationshipTypeValues.INFERRED_FROM,
            )
        ]
    )
    return item


def _impressions(prediction: Prediction) -> hd.sr.ContainerContentItem:
    version = prediction.model_version
    items: list[hd.sr.ContentItem] = []
    if prediction.label in LABEL_CODES:
        items.append(
            hd.sr.CodeContentItem(
                name=codes.DCM.Impression,
                value=LABEL_CODES[prediction.label],
                relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
            )
        )
    else:  # the study rule's "not malignant": benign and normal could not be told apart
        items.append(_text(codes.DCM.Impression, NOT_MALIGNANT))
    if prediction.suspicion is not None:
        items.append(_num(codes.DCM.ProbabilityOfCancer, prediction.suspicion, UNITLESS))
    performance: list[hd.sr.ContentItem] = []
    for key, value in sorted(version.metrics.items()):
        if isinstance(value, int | float) and not isinstance(value, bool):
            performance.append(_num(_local(key.upper(), key.replace("_", " ")), value, UNITLESS))
    if isinstance(version.metrics.get("source"), str):
        performance.append(_text(PERFORMANCE_METHOD, version.metrics["source"]))
    if performance:
        items.append(_container(MODEL_PERFORMANCE, performance))
    section = _container(codes.DCM.Impressions, items)
    # TID 4019 Algorithm Identification: which weights said this.
    section.ContentSequence.extend(
        hd.sr.AlgorithmIdentification(name=version.name[:64], version=version.sha256[:16])
    )
    return section
