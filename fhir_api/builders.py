"""Each FHIR R4 resource as a plain dict, built from the models: pure functions that query nothing
beyond what the caller selected or prefetched (`reads` and `search` do that).

Logical ids are fixed (the webhooks link to them): `Patient/{patient}`, `ImagingStudy/{study}`,
`DiagnosticReport/prediction-{prediction}` (the AI's result: preliminary),
`DiagnosticReport/review-{review}` (a clinician's signed reading: final, or amended when it
corrects an earlier reading, which stays readable as it was signed),
`Observation/prediction-{prediction}-{suspicion|normal|benign|malignant}` and
`Device/{model version}`.

Where FHIR has no code for what the portal says (its labels, the suspicion, the model's metrics),
the portal's own code systems and extensions below name them."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone
from django.utils.html import escape

from cases.models import LABEL_CHOICES, Patient, Prediction, Review, Scan, Slice, Study
from inference.models import ModelVersion
from inference.preprocessing import CLASS_NAMES

from .links import reference

Resource = dict[str, Any]

FHIR_VERSION = "4.0.1"
FHIR_JSON = "application/fhir+json"

# Code systems FHIR and DICOM define.
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
V2_IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"
V2_DIAGNOSTIC_SERVICE = "http://terminology.hl7.org/CodeSystem/v2-0074"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DICOM_MODALITY = "http://dicom.nema.org/resources/ontology/DCM"
DICOM_UID = "urn:dicom:uid"
RFC_3986 = "urn:ietf:rfc:3986"
REPLACES_EXTENSION = "http://hl7.org/fhir/StructureDefinition/replaces"

# The portal's own: its observation codes, labels, model metrics, users and extensions.
CODE_SYSTEM = "urn:lungportal:fhir:code"
LABEL_SYSTEM = "urn:lungportal:fhir:label"
METRIC_SYSTEM = "urn:lungportal:fhir:metric"
USER_SYSTEM = "urn:lungportal:user"
MODEL_SHA256_SYSTEM = "urn:lungportal:model-sha256"
MODEL_VERSION_EXTENSION = "urn:lungportal:fhir:extension:model-version"
MODEL_PERFORMANCE_EXTENSION = "urn:lungportal:fhir:extension:model-performance"
AI_REPORT_EXTENSION = "urn:lungportal:fhir:extension:ai-report"
# What a JPEG/PNG series' generated UID is made from, beside the series' own id and arrival.
IMAGE_SERIES_UID_SOURCE = "urn:lungportal:image-series"

SUSPICION = "suspicion"
OBSERVATION_KINDS = (SUSPICION, *CLASS_NAMES)
SUSPICION_CODE = "malignancy-suspicion"

REPORT_CODE = {
    "coding": [{"system": LOINC, "code": "24627-2", "display": "Chest CT"}],
    "text": "Lung CT",
}
RADIOLOGY = [{"coding": [{"system": V2_DIAGNOSTIC_SERVICE, "code": "RAD", "display": "Radiology"}]}]
IMAGING = [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "imaging", "display": "Imaging"}]}]
GENDER: dict[str, str] = {
    Patient.Sex.FEMALE: "female",
    Patient.Sex.MALE: "male",
    Patient.Sex.OTHER: "other",
    Patient.Sex.UNKNOWN: "unknown",
}
METRIC_NAMES = {
    "malignant_sensitivity": "malignant sensitivity",
    "specificity": "specificity",
    "balanced_accuracy": "balanced accuracy",
    "balanced_accuracy_sd": "balanced accuracy, standard deviation across folds",
    "malignant_auc": "malignant AUC",
    "benign_vs_normal_auc": "benign vs normal AUC",
    "ece": "expected calibration error",
}
HEADLINE_METRICS = ("malignant_sensitivity", "specificity", "balanced_accuracy")


# --- Patient ------------------------------------------------------------------------------------


def mrn_identifier(patient: Patient) -> Resource:
    return {"system": settings.FHIR_MRN_SYSTEM, "value": patient.mrn}


def patient_reference(patient: Patient) -> Resource:
    """A reference that names the patient's MRN as well as their id, for readers without access
    to the Patient resource (a webhook's receiver)."""
    return {
        "reference": reference("Patient", patient.pk),
        "type": "Patient",
        "identifier": mrn_identifier(patient),
        "display": patient.name,
    }


def patient_resource(patient: Patient) -> Resource:
    """Needs `patient.team` (selected by `selectors.patients_for`)."""
    return {
        "resourceType": "Patient",
        "id": str(patient.pk),
        "meta": {"lastUpdated": instant(patient.updated_at)},
        "identifier": [
            {
                "use": "usual",
                "type": {
                    "coding": [
                        {"system": V2_IDENTIFIER_TYPE, "code": "MR", "display": "Medical record number"}
                    ]
                },
                **mrn_identifier(patient),
                # MRNs are unique within a care team.
                "assigner": {"display": patient.team.name},
            }
        ],
        "active": True,
        "name": [{"use": "official", "text": patient.name}],
        "gender": GENDER.get(patient.sex, "unknown"),
        "birthDate": patient.birth_date.isoformat(),
    }


# --- ImagingStudy -------------------------------------------------------------------------------


def imaging_study_resource(study: Study) -> Resource:
    """One study with all its series: DICOM series with their UIDs, or the one series of a JPEG/PNG
    upload. Needs `study.patient` and its prefetched `series`, each with its prefetched `slices`
    (`reads.studies_with_series`)."""
    series = [(scan, list(scan.slices.all())) for scan in study.series.all()]
    resource: Resource = {
        "resourceType": "ImagingStudy",
        "id": str(study.pk),
        # A series that joins later changes the study.
        "meta": {"lastUpdated": instant(max([study.created_at, *(scan.created_at for scan, _ in series)]))},
        "status": "available",
        "subject": patient_reference(study.patient),
        "started": study_started(study),
        "numberOfSeries": len(series),
        "numberOfInstances": sum(len(slices) for _, slices in series),
    }
    identifiers: list[Resource] = []
    if study.study_instance_uid:
        identifiers.append({"system": DICOM_UID, "value": f"urn:oid:{study.study_instance_uid}"})
    if study.accession_number:
        identifiers.append(
            {
                "type": {
                    "coding": [{"system": V2_IDENTIFIER_TYPE, "code": "ACSN", "display": "Accession ID"}]
                },
                "value": study.accession_number,
            }
        )
    if identifiers:
        resource["identifier"] = identifiers
    modalities = list(dict.fromkeys(series_modality(scan) for scan, _ in series))
    if modalities:
        resource["modality"] = [{"system": DICOM_MODALITY, "code": code} for code in modalities]
    if study.description:
        resource["description"] = study.description
    notes = [{"text": scan.note} for scan, _ in series if scan.note]
    if notes:
        resource["note"] = notes
    if series:
        resource["series"] = [_series(scan, slices) for scan, slices in series]
    return resource


def study_started(study: Study) -> str:
    """The study date, with its time where the study came with one. DICOM's StudyTime is the
    site's local time; FHIR needs a zone with a time, so the portal's TIME_ZONE is taken as it."""
    if study.study_time is None:
        return study.study_date.isoformat()
    local = dt.datetime.combine(study.study_date, study.study_time.replace(microsecond=0))
    return timezone.make_aware(local, timezone.get_default_timezone()).isoformat()


def series_modality(scan: Scan) -> str:
    # pacs.reading takes CT images only, and the portal's JPEG/PNG slices are CT slices too.
    return scan.modality or "CT"


def series_uid(scan: Scan) -> str:
    """A DICOM series' own UID; for JPEG/PNG slices, a UID made from the series' identity (2.25,
    as DICOM derives UIDs from UUIDs), the same on every read."""
    if scan.series_instance_uid:
        return scan.series_instance_uid
    name = f"{IMAGE_SERIES_UID_SOURCE}:{scan.pk}:{instant(scan.created_at)}"
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, name).int}"


def _series(scan: Scan, slices: Sequence[Slice]) -> Resource:
    series: Resource = {
        "uid": series_uid(scan),
        "modality": {"system": DICOM_MODALITY, "code": series_modality(scan)},
        "numberOfInstances": len(slices),
    }
    if scan.series_number is not None and scan.series_number >= 0:
        series["number"] = scan.series_number
    if scan.series_description:
        series["description"] = scan.series_description
    instances = [_instance(item) for item in slices if item.sop_instance_uid and item.sop_class_uid]
    if instances:
        series["instance"] = instances
    return series


def _instance(item: Slice) -> Resource:
    instance: Resource = {
        "uid": item.sop_instance_uid,
        "sopClass": {"system": RFC_3986, "code": f"urn:oid:{item.sop_class_uid}"},
    }
    if item.instance_number is not None and item.instance_number >= 0:
        instance["number"] = item.instance_number
    return instance


# --- DiagnosticReport ---------------------------------------------------------------------------


def prediction_report_id(prediction: Prediction | int) -> str:
    return f"prediction-{prediction if isinstance(prediction, int) else prediction.pk}"


def review_report_id(review: Review | int) -> str:
    return f"review-{review if isinstance(review, int) else review.pk}"


def prediction_report(prediction: Prediction) -> Resource:
    """The AI's result, preliminary: a clinician's sign-off is a report of its own. Needs
    `prediction.scan.patient` and `prediction.model_version`."""
    report = _report(prediction, prediction_report_id(prediction), "preliminary", _issued(prediction))
    report["code"] = {**REPORT_CODE, "text": "Lung CT: AI classification"}
    report["conclusion"] = _ai_conclusion(prediction)
    if prediction.label:
        report["conclusionCode"] = [label_concept(prediction.label)]
    report["text"] = narrative(
        "Preliminary: the AI's result, not signed by a clinician.",
        report["conclusion"],
        model_summary(prediction.model_version),
    )
    return report


def review_report(review: Review) -> Resource:
    """A clinician's signed reading: final, or amended when it corrects an earlier reading (which
    it names). Needs `review.reviewer` and what `prediction_report` needs of `review.prediction`."""
    prediction = review.prediction
    status = "amended" if review.supersedes_id else "final"
    report = _report(prediction, review_report_id(review), status, review.created_at)
    reader = reader_reference(review.reviewer)
    report["performer"] = [reader]
    report["resultsInterpreter"] = [reader]
    report["conclusion"] = review_conclusion(review)
    report["conclusionCode"] = [label_concept(review.label)]
    report["extension"].append(
        {
            "url": AI_REPORT_EXTENSION,
            "valueReference": {"reference": reference("DiagnosticReport", prediction_report_id(prediction))},
        }
    )
    signed = f"{status.capitalize()}: signed by {reader['display']} on {review.created_at:%Y-%m-%d}"
    if review.supersedes_id:
        report["extension"].append(
            {
                "url": REPLACES_EXTENSION,
                "valueReference": {
                    "reference": reference("DiagnosticReport", review_report_id(review.supersedes_id))
                },
            }
        )
        signed += f", correcting the reading in DiagnosticReport/{review_report_id(review.supersedes_id)}"
    report["text"] = narrative(
        signed + ".",
        report["conclusion"],
        f"AI result: {_ai_conclusion(prediction)}",
        model_summary(prediction.model_version),
    )
    return report


def _report(prediction: Prediction, logical_id: str, status: str, issued: dt.datetime) -> Resource:
    scan = prediction.scan
    report: Resource = {
        "resourceType": "DiagnosticReport",
        "id": logical_id,
        "meta": {"lastUpdated": instant(issued)},
        # The model version and its measured performance travel with every report.
        "extension": model_extensions(prediction.model_version),
        "status": status,
        "category": RADIOLOGY,
        "code": REPORT_CODE,
        "subject": patient_reference(scan.patient),
        "effectiveDateTime": scan.study_date.isoformat(),
        "issued": instant(issued),
        "imagingStudy": [{"reference": reference("ImagingStudy", scan.study_id)}],
    }
    results = [
        {"reference": reference("Observation", observation_id(prediction, kind))}
        for kind in observation_kinds(prediction)
    ]
    if results:
        report["result"] = results
    return report


def _issued(prediction: Prediction) -> dt.datetime:
    return prediction.finished_at or prediction.created_at


def _ai_conclusion(prediction: Prediction) -> str:
    conclusion = prediction.finding or "No result."
    if prediction.suspicion is not None:
        conclusion += f" Suspicion of malignancy: {percent(prediction.suspicion)}."
    return conclusion


def review_conclusion(review: Review) -> str:
    label = review.get_label_display()
    if review.verdict == Review.Verdict.AGREE:
        conclusion = f"{label}; the reader agrees with the AI result."
    else:
        ai_label = review.prediction.get_label_display() if review.prediction.label else "no label"
        conclusion = f"{label}; the reader corrects the AI result ({ai_label})."
    if review.comment:
        conclusion += f" {review.comment}"
    return conclusion


def reader_reference(user: User) -> Resource:
    return {
        "type": "Practitioner",
        "identifier": {"system": USER_SYSTEM, "value": user.get_username()},
        "display": user.get_full_name() or user.get_username(),
    }


def label_concept(label: str) -> Resource:
    display = dict(LABEL_CHOICES).get(label, label)
    return {"coding": [{"system": LABEL_SYSTEM, "code": label, "display": display}], "text": display}


# --- Observation --------------------------------------------------------------------------------


def observation_id(prediction: Prediction | int, kind: str) -> str:
    return f"{prediction_report_id(prediction)}-{kind}"


def observation_kinds(prediction: Prediction) -> list[str]:
    """The observations a finished prediction has: its suspicion and its class probabilities, each
    where it was measured (a study with no assessable slice has neither)."""
    return observation_kinds_of(
        prediction.status,
        prediction.suspicion,
        {name: getattr(prediction, f"p_{name}") for name in CLASS_NAMES},
    )


def observation_kinds_of(
    status: str, suspicion: float | None, probabilities: Mapping[str, float | None]
) -> list[str]:
    """`observation_kinds` from the columns alone (searches read just these)."""
    if status != Prediction.Status.SUCCEEDED:
        return []
    kinds = [SUSPICION] if suspicion is not None else []
    if all(value is not None for value in probabilities.values()):
        kinds.extend(CLASS_NAMES)
    return kinds


def observation_code(kind: str) -> Resource:
    if kind == SUSPICION:
        code, display = SUSPICION_CODE, "Suspicion of malignancy of the study (calibrated probability)"
    else:
        code, display = f"probability-{kind}", f"Probability of the {kind} class for the study"
    return {"coding": [{"system": CODE_SYSTEM, "code": code, "display": display}], "text": display}


def observation_resource(prediction: Prediction, kind: str) -> Resource:
    """One of `observation_kinds(prediction)`. Needs what `prediction_report` needs."""
    scan = prediction.scan
    value = prediction.suspicion if kind == SUSPICION else getattr(prediction, f"p_{kind}")
    if kind not in observation_kinds(prediction) or value is None:
        raise ValueError(f"prediction {prediction.pk} has no {kind} observation")
    version = prediction.model_version
    resource: Resource = {
        "resourceType": "Observation",
        "id": observation_id(prediction, kind),
        "meta": {"lastUpdated": instant(_issued(prediction))},
        # The model's output: no clinician verifies the number itself (they sign the report).
        "status": "preliminary",
        "category": IMAGING,
        "code": observation_code(kind),
        "subject": patient_reference(scan.patient),
        "effectiveDateTime": scan.study_date.isoformat(),
        "issued": instant(_issued(prediction)),
        "valueQuantity": {
            "value": round(float(value), 6),
            "unit": "probability",
            "system": UCUM,
            "code": "1",
        },
        "device": {"reference": reference("Device", version.pk), "display": version.name},
        "derivedFrom": [{"reference": reference("ImagingStudy", scan.study_id)}],
    }
    if kind == SUSPICION:
        resource["method"] = {"text": Prediction.AGGREGATION_RULE}
    return resource


# --- Device -------------------------------------------------------------------------------------


def numeric_metrics(version: ModelVersion) -> dict[str, float]:
    metrics = version.metrics if isinstance(version.metrics, dict) else {}
    return {
        str(key): float(value)
        for key, value in metrics.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    }


def metrics_source(version: ModelVersion) -> str:
    metrics = version.metrics if isinstance(version.metrics, dict) else {}
    source = metrics.get("source")
    return source if isinstance(source, str) else ""


def model_extensions(version: ModelVersion) -> list[Resource]:
    extensions: list[Resource] = [
        {
            "url": MODEL_VERSION_EXTENSION,
            "valueReference": {"reference": reference("Device", version.pk), "display": version.name},
        }
    ]
    parts: list[Resource] = [
        {"url": key, "valueDecimal": value} for key, value in numeric_metrics(version).items()
    ]
    if metrics_source(version):
        parts.append({"url": "source", "valueString": metrics_source(version)})
    if parts:
        extensions.append({"url": MODEL_PERFORMANCE_EXTENSION, "extension": parts})
    return extensions


def model_summary(version: ModelVersion) -> str:
    """The model version and its headline figures, in words."""
    metrics = numeric_metrics(version)
    figures = [f"{METRIC_NAMES[key]} {percent(metrics[key])}" for key in HEADLINE_METRICS if key in metrics]
    summary = f"Model version {version.name}"
    if figures:
        summary += ": " + ", ".join(figures)
        if metrics_source(version):
            summary += f" ({metrics_source(version)})"
    return summary + "."


def device_resource(version: ModelVersion) -> Resource:
    resource: Resource = {
        "resourceType": "Device",
        "id": str(version.pk),
        "meta": {"lastUpdated": instant(version.created_at)},
        "identifier": [{"system": MODEL_SHA256_SYSTEM, "value": version.sha256}],
        # Active: the version new scans are classified with; the others still describe their results.
        "status": "active" if version.is_active else "inactive",
        "deviceName": [{"name": version.name, "type": "model-name"}],
        "type": {"text": "Software: a convolutional neural network classifying lung CT slices"},
        "version": [{"type": {"text": "weights SHA-256"}, "value": version.sha256}],
    }
    properties = [
        {
            "type": {
                "coding": [{"system": METRIC_SYSTEM, "code": key, "display": METRIC_NAMES.get(key, key)}],
                "text": METRIC_NAMES.get(key, key),
            },
            "valueQuantity": [{"value": value, "system": UCUM, "code": "1"}],
        }
        for key, value in numeric_metrics(version).items()
    ]
    if properties:
        resource["property"] = properties
    if metrics_source(version):
        resource["note"] = [{"text": f"Measured performance: {metrics_source(version)}."}]
    return resource


# --- Bundle, OperationOutcome, shared -----------------------------------------------------------


def searchset(
    *,
    total: int,
    entries: Iterable[tuple[str, Resource]],
    links: Mapping[str, str],
    included: Iterable[tuple[str, Resource]] = (),
    outcome: Resource | None = None,
) -> Resource:
    """A search's page: (fullUrl, resource) entries, the resources `_include` added, an
    OperationOutcome about the search (parameters it ignored), and the self / next / previous links."""
    found = [{"fullUrl": url, "resource": resource, "search": {"mode": "match"}} for url, resource in entries]
    found += [
        {"fullUrl": url, "resource": resource, "search": {"mode": "include"}} for url, resource in included
    ]
    if outcome is not None:
        found.append({"resource": outcome, "search": {"mode": "outcome"}})
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": [{"relation": relation, "url": url} for relation, url in links.items()],
        "entry": found,
    }


def operation_outcome(code: str, diagnostics: str, *, severity: str = "error") -> Resource:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
    }


def narrative(*paragraphs: str) -> Resource:
    body = "".join(f"<p>{escape(text)}</p>" for text in paragraphs if text)
    return {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{body}</div>'}


def instant(value: dt.datetime) -> str:
    """A FHIR instant: UTC, to the millisecond."""
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def percent(value: float) -> str:
    return f"{value * 100:.1f}%"
