"""FHIR search as R4 and its clients expect: lenient by default and strict on request, `_id`,
`_lastUpdated`, `_summary=count`, `_total`, `_sort`, `_include`, `identifier=system|`, Bearer
tokens, and every search audited as a read of each patient whose data it returned."""

from __future__ import annotations

import datetime as dt
from datetime import date
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from audit.models import AuditEntry
from cases.models import Patient, Prediction, Review
from tests import factories
from tests.fhir_api.studies import dicom_study
from tests.fhir_api.test_api import FHIR_JSON, get, ids, outcome, token_client, valid
from tests.reading.studies import sign, study

pytestmark = pytest.mark.django_db

AT = dt.datetime(2026, 11, 2, 9, 30, 15, 123456, tzinfo=dt.UTC)


@pytest.fixture
def record(alice, patient):
    """Two studies of the patient (one signed), and a second patient of the team with one study."""
    scan = study(patient, alice, suspicion=0.9, study_date=date(2026, 11, 1))
    review = sign(scan, alice, "malignant")
    earlier = study(patient, alice, suspicion=0.1, study_date=date(2025, 3, 4))
    other: Any = factories.PatientFactory(team=patient.team, name="Zoe Quill", mrn="Q-9")
    others = study(other, alice, suspicion=0.5, study_date=date(2026, 6, 6))
    return {
        "patient": patient,
        "other": other,
        "scan": scan,
        "earlier": earlier,
        "others": others,
        "prediction": scan.predictions.get(),
        "review": review,
    }


def entries(bundle, mode):
    return [entry for entry in bundle["entry"] if entry["search"]["mode"] == mode]


def matches(bundle):
    return [entry["resource"]["id"] for entry in entries(bundle, "match")]


def since(mark):
    return AuditEntry.objects.filter(id__gt=mark, action=AuditEntry.Action.READ)


def mark():
    return AuditEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0


def link(bundle, relation):
    return next(item["url"] for item in bundle["link"] if item["relation"] == relation)


def query_of(url):
    return parse_qsl(urlsplit(url).query)


# --- lenient and strict -------------------------------------------------------------------------

UNKNOWN = "status=final&nonsense=1&patient:missing=true&_elements=id&_sort=-date,colour"


@pytest.mark.parametrize("prefer", [None, "handling=lenient", "respond-async, handling=lenient"])
def test_unknown_parameters_are_ignored_named_in_an_outcome_and_left_out_of_the_self_link(
    alice, record, prefer
):
    headers = {"HTTP_PREFER": prefer} if prefer else {}
    response = token_client(alice).get(f"/fhir/DiagnosticReport?{UNKNOWN}", **headers)
    assert response.status_code == 200
    bundle = valid(response.json())
    assert matches(bundle) == [f"review-{record['review'].pk}"] and bundle["total"] == 1
    (entry,) = entries(bundle, "outcome")
    issue = entry["resource"]["issue"][0]
    assert (issue["severity"], issue["code"]) == ("warning", "not-supported")
    for name in ("'nonsense'", "'patient:missing'", "'_elements'", "'colour'"):
        assert name in issue["diagnostics"]
    assert query_of(link(bundle, "self")) == [
        ("status", "final"),
        ("_sort", "-date"),
        ("_count", "20"),
        ("_offset", "0"),
    ]


def test_strict_handling_refuses_unknown_parameters_naming_them_all(alice, record):
    response = token_client(alice).get(
        f"/fhir/DiagnosticReport?{UNKNOWN}", HTTP_PREFER="return=minimal, handling=strict"
    )
    assert response.status_code == 400
    diagnostics = outcome(valid(response.json()), "not-supported")["issue"][0]["diagnostics"]
    for name in ("'nonsense'", "'patient:missing'", "'_elements'", "'colour'"):
        assert name in diagnostics
    # What strict handling reads, it answers.
    strict = token_client(alice).get("/fhir/DiagnosticReport?status=final", HTTP_PREFER="handling=strict")
    assert strict.status_code == 200 and strict.json()["total"] == 1


def test_an_ignored_parameter_never_narrows_or_widens_past_the_users_teams(charlie, record):
    bundle = get(token_client(charlie), "/fhir/Observation?nonsense=1")
    assert bundle["total"] == 0 and entries(bundle, "match") == []


# --- _summary, _total, and fhirpy's count --------------------------------------------------------


def test_summary_count_is_the_total_without_entries(alice, charlie, record):
    client = token_client(alice)
    everything = get(client, "/fhir/Observation")["total"]
    counted = get(client, "/fhir/Observation?_summary=count")
    assert (counted["total"], counted["entry"]) == (everything, []) and everything == 12
    assert [item["relation"] for item in counted["link"]] == ["self"]
    patient = record["patient"].pk
    assert get(client, f"/fhir/DiagnosticReport?_summary=count&patient={patient}")["total"] == 3
    assert get(client, "/fhir/Patient?_summary=count&_count=1")["total"] == 2
    assert get(token_client(charlie), "/fhir/Observation?_summary=count")["total"] == 0
    assert get(client, "/fhir/Patient?_summary=false")["entry"]


def test_a_count_as_fhirpy_asks_for_it_with_a_bearer_token(alice, record):
    """fhirpy 2.3's `SyncFHIRSearchSet.count()`: `_count=0&_totalMethod=count`, Accept FHIR JSON,
    and `Authorization: Bearer …`, reading `total`."""
    _, token = AuthToken.objects.create(alice)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    response = client.get(
        "/fhir/DiagnosticReport",
        {"patient": record["patient"].pk, "_count": 0, "_totalMethod": "count"},
        HTTP_ACCEPT=FHIR_JSON,
    )
    assert response.status_code == 200
    body = valid(response.json())
    assert body["total"] == 3 and entries(body, "match") == []


@pytest.mark.parametrize("total", ["none", "estimate", "accurate"])
def test_total_is_always_accurate(alice, record, total):
    assert get(token_client(alice), f"/fhir/ImagingStudy?_total={total}")["total"] == 3


# --- _id and _lastUpdated -----------------------------------------------------------------------


def test_id_finds_one_or_several_of_each_type(alice, charlie, record):
    client = token_client(alice)
    patient, other = record["patient"].pk, record["other"].pk
    prediction, review = record["prediction"].pk, record["review"].pk
    assert ids(get(client, f"/fhir/Patient?_id={patient}")) == [str(patient)]
    assert set(ids(get(client, f"/fhir/Patient?_id={patient},{other}"))) == {str(patient), str(other)}
    assert ids(get(client, f"/fhir/ImagingStudy?_id={record['earlier'].study_id}")) == [
        str(record["earlier"].study_id)
    ]
    reports = get(client, f"/fhir/DiagnosticReport?_id=prediction-{prediction},review-{review},review-x")
    assert set(ids(reports)) == {f"prediction-{prediction}", f"review-{review}"}
    observation = f"prediction-{prediction}-suspicion"
    assert ids(get(client, f"/fhir/Observation?_id={observation}")) == [observation]
    version = record["prediction"].model_version_id
    assert ids(get(client, f"/fhir/Device?_id={version}")) == [str(version)]
    assert get(client, "/fhir/Patient?_id=999999")["total"] == 0
    # Another team's ids are not found.
    outsider = token_client(charlie)
    assert get(outsider, f"/fhir/Patient?_id={patient}")["total"] == 0
    assert get(outsider, f"/fhir/Observation?_id={observation}")["total"] == 0


def test_last_updated_is_meta_last_updated_with_prefixes(alice, record):
    client = token_client(alice)
    Patient.objects.filter(pk=record["patient"].pk).update(updated_at=AT)
    Patient.objects.filter(pk=record["other"].pk).update(updated_at=AT + dt.timedelta(days=40))
    patient, other = str(record["patient"].pk), str(record["other"].pk)
    shown = get(client, f"/fhir/Patient/{patient}")["meta"]["lastUpdated"]
    assert shown == "2026-11-02T09:30:15.123Z"
    assert ids(get(client, "/fhir/Patient", _lastUpdated=shown)) == [patient]  # to the millisecond
    assert ids(get(client, "/fhir/Patient?_lastUpdated=2026-11-02")) == [patient]
    assert ids(get(client, "/fhir/Patient?_lastUpdated=eq2026-11")) == [patient]
    assert ids(get(client, "/fhir/Patient?_lastUpdated=ge2026-12-01")) == [other]
    assert ids(get(client, "/fhir/Patient?_lastUpdated=gt2026-11-02T09:30:15Z")) == [other]
    assert ids(get(client, "/fhir/Patient?_lastUpdated=le2026-11-02T09:30:15Z")) == [patient]
    assert ids(get(client, "/fhir/Patient?_lastUpdated=lt2026-11-02T09:30:16Z")) == [patient]
    assert get(client, "/fhir/Patient?_lastUpdated=lt2026-11-02T09:30:15Z")["total"] == 0
    assert get(client, "/fhir/Patient?_lastUpdated=ge2026-11-01&_lastUpdated=lt2026-11-03")["total"] == 1


@pytest.mark.parametrize("kind", ["Patient", "ImagingStudy", "DiagnosticReport", "Observation", "Device"])
def test_last_updated_at_the_ends_of_time_is_answered_not_crashed(alice, record, kind):
    client = token_client(alice)
    everything = get(client, f"/fhir/{kind}")["total"]
    assert get(client, f"/fhir/{kind}", _lastUpdated="ge0001-01-01T00:00:00+05:00")["total"] == everything
    assert get(client, f"/fhir/{kind}", _lastUpdated="lt9999-12-31")["total"] == everything
    assert get(client, f"/fhir/{kind}?_lastUpdated=9999")["total"] == 0
    assert get(client, f"/fhir/{kind}?_lastUpdated=lt0001")["total"] == 0


def test_last_updated_of_reports_is_when_they_were_issued(alice, record):
    client = token_client(alice)
    Prediction.objects.update(finished_at=AT - dt.timedelta(days=10))
    Review.objects.filter(pk=record["review"].pk).update(created_at=AT)
    found = get(client, "/fhir/DiagnosticReport?_lastUpdated=ge2026-11-02")
    assert ids(found) == [f"review-{record['review'].pk}"]
    assert found["entry"][0]["resource"]["meta"]["lastUpdated"] == "2026-11-02T09:30:15.123Z"
    assert get(client, "/fhir/DiagnosticReport?_lastUpdated=lt2026-11-02")["total"] == 3
    assert get(client, "/fhir/Observation?_lastUpdated=2026-10-23")["total"] == 12
    assert get(client, "/fhir/ImagingStudy?_lastUpdated=ge2000")["total"] == 3
    assert get(client, "/fhir/ImagingStudy?_lastUpdated=lt2000")["total"] == 0
    assert get(client, f"/fhir/Device?_lastUpdated=le{timezone.now().year + 1}")["total"] == 1


# --- _sort --------------------------------------------------------------------------------------


def test_sort_by_id_and_date(alice, record):
    client = token_client(alice)
    scan, earlier, others = (str(record[k].study_id) for k in ("scan", "earlier", "others"))
    assert ids(get(client, "/fhir/ImagingStudy?_sort=date")) == [earlier, others, scan]
    assert ids(get(client, "/fhir/ImagingStudy?_sort=-date")) == [scan, others, earlier]
    assert ids(get(client, "/fhir/ImagingStudy?_sort=_id")) == sorted([scan, earlier, others], key=int)
    patients = sorted([record["patient"].pk, record["other"].pk])
    assert ids(get(client, "/fhir/Patient?_sort=-_id")) == [str(pk) for pk in reversed(patients)]
    reports = ids(get(client, "/fhir/DiagnosticReport?_sort=_id"))
    assert reports[-1] == f"review-{record['review'].pk}" and reports[:3] == sorted(
        reports[:3], key=lambda i: int(i.split("-")[1])
    )
    by_date = ids(get(client, "/fhir/DiagnosticReport?_sort=date,-_id"))
    assert by_date[0] == f"prediction-{record['earlier'].predictions.get().pk}"
    assert by_date[-2:] == [f"review-{record['review'].pk}", f"prediction-{record['prediction'].pk}"]
    observations = ids(get(client, "/fhir/Observation?_sort=-_id&_count=4"))
    assert observations[0].startswith(f"prediction-{record['others'].predictions.get().pk}-")


def test_a_sort_key_a_type_lacks_is_ignored_or_refused_when_strict(alice, record):
    client = token_client(alice)
    bundle = get(client, "/fhir/Observation?_sort=date")
    assert (
        bundle["total"] == 12
        and "'date'" in entries(bundle, "outcome")[0]["resource"]["issue"][0]["diagnostics"]
    )
    response = client.get("/fhir/Observation?_sort=date", HTTP_PREFER="handling=strict")
    assert response.status_code == 400
    outcome(response.json(), "not-supported")


# --- _include -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource_type", "include"),
    [
        ("DiagnosticReport", "DiagnosticReport:subject"),
        ("ImagingStudy", "ImagingStudy:subject"),
        ("ImagingStudy", "ImagingStudy:patient"),
        ("Observation", "Observation:subject:Patient"),
    ],
)
def test_include_adds_each_subjects_patient_once(alice, record, resource_type, include):
    client = token_client(alice)
    patient = record["patient"].pk
    bundle = get(client, f"/fhir/{resource_type}?patient={patient}&_include={include}")
    plain = get(client, f"/fhir/{resource_type}?patient={patient}")
    assert bundle["total"] == plain["total"] and ids(plain) == [
        e["resource"]["id"] for e in entries(bundle, "match")
    ]
    (included,) = entries(bundle, "include")
    assert included["resource"]["resourceType"] == "Patient" and included["resource"]["id"] == str(patient)
    assert included["fullUrl"] == f"http://testserver/fhir/Patient/{patient}"
    assert ("_include", include) in query_of(link(bundle, "self"))
    both = get(client, f"/fhir/{resource_type}?_include={include}")
    assert {e["resource"]["id"] for e in entries(both, "include")} == {str(patient), str(record["other"].pk)}


def test_include_keeps_to_the_page_and_an_unsupported_one_is_ignored(alice, record):
    client = token_client(alice)
    first = get(client, "/fhir/ImagingStudy?_sort=date&_count=1&_include=ImagingStudy:subject")
    assert [e["resource"]["id"] for e in entries(first, "include")] == [str(record["patient"].pk)]
    second = get(client, link(first, "next"))
    assert [e["resource"]["id"] for e in entries(second, "include")] == [str(record["other"].pk)]
    ignored = get(client, "/fhir/DiagnosticReport?_include=DiagnosticReport:result")
    assert entries(ignored, "include") == [] and len(entries(ignored, "outcome")) == 1
    refused = client.get(
        "/fhir/DiagnosticReport?_include=DiagnosticReport:result", HTTP_PREFER="handling=strict"
    )
    assert refused.status_code == 400
    assert (
        entries(
            get(client, "/fhir/DiagnosticReport?_summary=count&_include=DiagnosticReport:subject"), "include"
        )
        == []
    )


# --- identifiers by system or value alone -------------------------------------------------------


def test_identifier_by_system_alone_or_by_value_without_a_system(alice, record):
    client = token_client(alice)
    both = {str(record["patient"].pk), str(record["other"].pk)}
    assert set(ids(get(client, "/fhir/Patient", identifier="urn:lungportal:mrn|"))) == both
    assert get(client, "/fhir/Patient", identifier="urn:other|")["total"] == 0
    assert get(client, "/fhir/Patient", identifier="|Q-9")["total"] == 0  # an MRN has its system
    lung, _ = dicom_study(record["patient"], alice, sizes=(1, 1), accession="A-90")
    assert ids(get(client, "/fhir/ImagingStudy", identifier="urn:dicom:uid|")) == [str(lung.study_id)]
    assert ids(get(client, "/fhir/ImagingStudy", identifier="|A-90")) == [str(lung.study_id)]
    assert get(client, "/fhir/Observation", code="urn:lungportal:fhir:code|")["total"] == 12
    assert get(client, "/fhir/Observation", code="http://loinc.org|")["total"] == 0


# --- Bearer -------------------------------------------------------------------------------------


def test_a_bearer_token_reads_and_searches_and_a_bad_one_is_401(alice, record):
    _, token = AuthToken.objects.create(alice)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert get(client, f"/fhir/Patient/{record['patient'].pk}")["id"] == str(record["patient"].pk)
    assert get(client, "/fhir/Patient")["total"] == 2
    for header in ("Bearer nonsense", "Bearer", f"Bearer {token} extra", f"bearer {token[:-1]}x"):
        client.credentials(HTTP_AUTHORIZATION=header)
        outcome(get(client, "/fhir/Patient", status=401), "login")


# --- audit --------------------------------------------------------------------------------------


def test_a_search_is_audited_as_a_read_of_each_patient_returned_in_one_write(alice, admin_user, record):
    client = token_client(alice)
    client.get("/fhir/Patient")  # warm what is cached per process
    before = mark()
    with CaptureQueriesContext(connection) as queries:
        get(client, "/fhir/Observation?_include=Observation:subject")
    inserts = [
        q["sql"] for q in queries.captured_queries if q["sql"].startswith("INSERT") and "audit" in q["sql"]
    ]
    assert len(inserts) == 1
    reads = since(before).order_by("patient_id")
    patient, other = record["patient"].pk, record["other"].pk
    assert [(e.patient_id, e.object_type, e.detail) for e in reads] == sorted(
        [
            (
                patient,
                "fhir_observation",
                "FHIR Observation search: 8 Observation returned, and the Patient (_include)",
            ),
            (
                other,
                "fhir_observation",
                "FHIR Observation search: 4 Observation returned, and the Patient (_include)",
            ),
        ]
    )
    assert {(e.username, e.channel) for e in reads} == {("alice", AuditEntry.Channel.API)}
    get(client, f"/fhir/DiagnosticReport?patient={patient}")
    found = token_client(admin_user).get("/api/v1/audit/", {"patient": patient}).json()["results"]
    assert {(e["object_type"], e["detail"]) for e in found} >= {
        ("fhir_observation", "FHIR Observation search: 8 Observation returned, and the Patient (_include)"),
        ("fhir_diagnosticreport", "FHIR DiagnosticReport search: 3 DiagnosticReport returned"),
    }
    assert {e["patient_id"] for e in found} == {patient}


@pytest.mark.parametrize(
    "url", ["/fhir/Patient", "/fhir/ImagingStudy", "/fhir/DiagnosticReport", "/fhir/Observation"]
)
def test_an_outsiders_search_returns_nothing_and_audits_no_patient(charlie, record, url):
    bundle = get(token_client(charlie), f"{url}?_include={url.rsplit('/', 1)[1]}:subject")
    assert bundle["total"] == 0 and entries(bundle, "match") == entries(bundle, "include") == []
    (entry,) = AuditEntry.objects.filter(action=AuditEntry.Action.READ)
    assert entry.patient_id is None and entry.username == "charlie"


def test_every_patient_of_a_patient_search_is_audited_and_a_count_names_none(alice, record):
    client = token_client(alice)
    get(client, "/fhir/Patient?_sort=_id")
    reads = AuditEntry.objects.filter(action=AuditEntry.Action.READ, object_type="fhir_patient")
    assert sorted(reads.values_list("patient_id", "detail")) == sorted(
        (pk, "FHIR Patient search: 1 Patient returned") for pk in (record["patient"].pk, record["other"].pk)
    )
    before = mark()
    get(client, "/fhir/DiagnosticReport?_summary=count")
    (entry,) = since(before)
    assert (entry.patient_id, entry.detail) == (None, "FHIR DiagnosticReport search: a count")
