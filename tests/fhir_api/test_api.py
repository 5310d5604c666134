"""/fhir/ over HTTP: token auth, team scoping on every URL, searches and paging, and hostile input
answered with an OperationOutcome (never a 500)."""

from __future__ import annotations

from datetime import date
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from fhir.resources.R4B import get_fhir_model_class
from knox.models import AuthToken
from rest_framework.test import APIClient

from audit.models import AuditEntry
from cases.models import Prediction
from fhir_api.links import resource_url
from tests import factories
from tests.fhir_api.studies import dicom_study
from tests.reading.studies import sign, study

pytestmark = pytest.mark.django_db

FHIR_JSON = "application/fhir+json"
KINDS = ("suspicion", "normal", "benign", "malignant")


def valid(resource):
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    return resource


def token_client(user):
    client = APIClient()
    _, token = AuthToken.objects.create(user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def get(client, url, status=200, **params):
    response = client.get(url, params or None)
    assert response.status_code == status, (url, response.status_code, response.content[:500])
    assert response["Content-Type"].startswith(FHIR_JSON)
    return valid(response.json())


def outcome(body, code):
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == code, body
    return body


@pytest.fixture
def record(alice, patient):
    """One of everything: a signed and amended study, and a study of another date."""
    scan = study(patient, alice, suspicion=0.9, study_date=date(2026, 11, 1))
    first = sign(scan, alice, "malignant")
    correction = sign(scan, alice, "benign", amends=first)
    earlier = study(patient, alice, suspicion=0.1, study_date=date(2025, 3, 4))
    prediction = scan.predictions.get()
    return {
        "patient": patient,
        "scan": scan,
        "earlier": earlier,
        "prediction": prediction,
        "first": first,
        "correction": correction,
    }


def read_urls(record):
    prediction = record["prediction"]
    return [
        f"/fhir/Patient/{record['patient'].pk}",
        f"/fhir/ImagingStudy/{record['scan'].study_id}",
        f"/fhir/DiagnosticReport/prediction-{prediction.pk}",
        f"/fhir/DiagnosticReport/review-{record['first'].pk}",
        f"/fhir/DiagnosticReport/review-{record['correction'].pk}",
        *(
            f"/fhir/Observation/prediction-{prediction.pk}-{k}"
            for k in ("suspicion", "normal", "benign", "malignant")
        ),
    ]


def search_urls(record):
    patient = record["patient"].pk
    return [
        "/fhir/Patient",
        f"/fhir/Patient?identifier={record['patient'].mrn}",
        "/fhir/ImagingStudy",
        f"/fhir/ImagingStudy?patient={patient}",
        "/fhir/DiagnosticReport",
        f"/fhir/DiagnosticReport?subject=Patient/{patient}",
        "/fhir/Observation",
        f"/fhir/Observation?patient={patient}",
    ]


# --- authentication -----------------------------------------------------------------------------


def test_a_token_reads_and_the_answer_is_fhir_json(alice, record):
    for url in read_urls(record):
        assert get(token_client(alice), url)["id"] == url.rsplit("/", 1)[1]


def test_a_session_reads_too(client, alice, record):
    client.force_login(alice)
    assert get(client, f"/fhir/Patient/{record['patient'].pk}")["resourceType"] == "Patient"


@pytest.mark.parametrize("kind", ["read", "search", "unknown"])
def test_anonymous_gets_401_outcome_everywhere_but_metadata(client, record, kind):
    urls = {"read": read_urls(record), "search": search_urls(record), "unknown": ["/fhir/Foo", "/fhir/"]}[
        kind
    ]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 401, url
        assert response["WWW-Authenticate"] == "Token"
        outcome(valid(response.json()), "login")


def test_a_bad_token_is_401(record):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token nonsense")
    outcome(get(client, f"/fhir/Patient/{record['patient'].pk}", status=401), "login")


def test_metadata_is_public_and_lists_every_type(client):
    statement = get(client, "/fhir/metadata")
    assert statement["fhirVersion"] == "4.0.1" and statement["format"] == [FHIR_JSON]
    assert statement["implementation"]["url"] == "http://testserver/fhir/"
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert {p["name"] for p in resources["DiagnosticReport"]["searchParam"]} == {
        "patient",
        "subject",
        "status",
        "date",
    }
    assert resources["DiagnosticReport"]["searchInclude"] == [
        "DiagnosticReport:subject",
        "DiagnosticReport:patient",
    ]
    common = {p["name"] for p in statement["rest"][0]["searchParam"]}
    assert {"_id", "_lastUpdated", "_sort", "_summary", "_total", "_count", "_offset"} <= common
    assert "handling=strict" in statement["rest"][0]["documentation"]


@pytest.mark.parametrize(
    "accept",
    [
        "",
        FHIR_JSON,
        "application/json",
        "*/*",
        "application/fhir+xml;q=0.9, application/fhir+json",
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",  # a browser's
    ],
)
def test_a_client_that_takes_json_gets_fhir_json(alice, record, accept):
    client = token_client(alice)
    for url in (f"/fhir/Patient/{record['patient'].pk}", "/fhir/Patient", "/fhir/metadata"):
        response = client.get(url, HTTP_ACCEPT=accept) if accept else client.get(url)
        assert response.status_code == 200 and response["Content-Type"].startswith(FHIR_JSON), (url, accept)


@pytest.mark.parametrize(
    ("accept", "query"),
    [
        ("application/fhir+xml", ""),
        ("application/xml", ""),
        ("application/fhir+json;q=0, application/fhir+xml", ""),
        ("", "_format=xml"),
        ("", "_format=application/fhir%2Bxml"),
        (FHIR_JSON, "_format=xml"),  # _format overrides Accept
    ],
)
def test_xml_or_another_format_is_a_406_outcome_in_json(alice, record, accept, query):
    client = token_client(alice)
    headers = {"HTTP_ACCEPT": accept} if accept else {}
    for url in (f"/fhir/Patient/{record['patient'].pk}", "/fhir/DiagnosticReport", "/fhir/metadata"):
        response = client.get(f"{url}?{query}", **headers)
        assert response.status_code == 406, (url, accept, query)
        assert response["Content-Type"].startswith(FHIR_JSON)
        outcome(valid(response.json()), "not-supported")
    assert client.get("/fhir/Patient?_format=json").status_code == 200


def test_writes_are_405(alice, record):
    response = token_client(alice).post("/fhir/Patient", {"resourceType": "Patient"}, format="json")
    assert response.status_code == 405
    outcome(response.json(), "not-supported")


# --- team scoping -------------------------------------------------------------------------------


def test_a_colleague_reads_everything(bob, record):
    for url in read_urls(record):
        get(token_client(bob), url)


def test_an_outsider_gets_404_on_every_read_and_it_is_audited(charlie, record):
    client = token_client(charlie)
    for url in read_urls(record):
        outcome(get(client, url, status=404), "not-found")
    refused = AuditEntry.objects.filter(outcome=AuditEntry.Outcome.REFUSED, patient_id=record["patient"].pk)
    assert refused.count() == len(read_urls(record))
    assert set(refused.values_list("channel", flat=True)) == {AuditEntry.Channel.API}


def test_an_outsider_finds_nothing(charlie, alice, record):
    for url in search_urls(record):
        assert get(token_client(alice), url)["total"] > 0, url
        bundle = get(token_client(charlie), url)
        assert (bundle["total"], bundle["entry"]) == (0, []), url


def test_devices_are_the_portals_not_a_teams(charlie, record):
    version = record["prediction"].model_version
    assert get(token_client(charlie), f"/fhir/Device/{version.pk}")["id"] == str(version.pk)
    assert get(token_client(charlie), "/fhir/Device")["total"] == 1


def test_reads_are_audited_on_the_api_channel(alice, record):
    get(token_client(alice), f"/fhir/DiagnosticReport/review-{record['first'].pk}")
    entry = AuditEntry.objects.get(action=AuditEntry.Action.READ, object_type="review")
    assert entry.channel == AuditEntry.Channel.API and entry.patient_id == record["patient"].pk
    assert entry.detail == f"FHIR DiagnosticReport/review-{record['first'].pk}"


def test_an_imaging_study_read_is_audited_as_the_study_of_its_patient(alice, record):
    study = record["scan"].study_id
    get(token_client(alice), f"/fhir/ImagingStudy/{study}")
    entry = AuditEntry.objects.get(action=AuditEntry.Action.READ, object_type="study")
    assert (entry.object_id, entry.patient_id) == (study, record["patient"].pk)
    assert entry.detail == f"FHIR ImagingStudy/{study}" and entry.channel == AuditEntry.Channel.API


def test_an_outsider_gets_404_for_a_study_of_two_series_and_it_is_audited(alice, bob, charlie, patient):
    lung, _ = dicom_study(patient, alice, sizes=(2, 1))
    url = f"/fhir/ImagingStudy/{lung.study_id}"
    assert get(token_client(bob), url)["numberOfSeries"] == 2  # a colleague reads it
    outcome(get(token_client(charlie), url, status=404), "not-found")
    refused = AuditEntry.objects.get(outcome=AuditEntry.Outcome.REFUSED)
    assert (refused.object_type, refused.object_id, refused.patient_id) == (
        "study",
        lung.study_id,
        patient.pk,
    )
    assert get(token_client(charlie), "/fhir/ImagingStudy", patient=patient.pk)["total"] == 0


def test_unknown_ids_and_types_are_404(alice, record):
    client = token_client(alice)
    prediction = record["prediction"].pk
    for url in [
        "/fhir/Patient/abc",
        "/fhir/Patient/999999999999999999",
        "/fhir/Patient/" + "9" * 40,
        "/fhir/DiagnosticReport/12",
        "/fhir/DiagnosticReport/scan-1",
        f"/fhir/Observation/prediction-{prediction}-heatmap",
        "/fhir/Device/0",
        "/fhir/Foo/1",
        "/fhir/Patient/1/_history",
    ]:
        outcome(get(client, url, status=404), "not-found")


def test_unfinished_predictions_have_no_report(alice, patient):
    for status in ("queued", "running", "failed"):
        prediction = study(patient, alice, status=status, study_date=date(2026, 1, 1)).predictions.get()
        get(token_client(alice), f"/fhir/DiagnosticReport/prediction-{prediction.pk}", status=404)
        get(token_client(alice), f"/fhir/Observation/prediction-{prediction.pk}-suspicion", status=404)
    assert get(token_client(alice), "/fhir/DiagnosticReport")["total"] == 0


# --- searches -----------------------------------------------------------------------------------


def ids(bundle):
    return [entry["resource"]["id"] for entry in bundle["entry"]]


def test_patient_by_identifier_and_name(alice, team_a, record, settings):
    other: Any = factories.PatientFactory(team=team_a, name="Zoe Quill", mrn="Q-9")
    client = token_client(alice)
    patient = record["patient"]
    assert ids(get(client, "/fhir/Patient", identifier=f"urn:lungportal:mrn|{patient.mrn}")) == [
        str(patient.pk)
    ]
    assert ids(get(client, "/fhir/Patient", identifier="Q-9")) == [str(other.pk)]
    assert get(client, "/fhir/Patient", identifier="urn:other|Q-9")["total"] == 0
    assert ids(get(client, "/fhir/Patient", name="qui")) == [str(other.pk)]  # a word starts with it
    assert get(client, "/fhir/Patient", name="uill")["total"] == 0
    assert ids(get(client, "/fhir/Patient", **{"name:contains": "uill"})) == [str(other.pk)]
    settings.FHIR_MRN_SYSTEM = "https://h.example/mrn"
    assert ids(get(client, "/fhir/Patient", identifier="https://h.example/mrn|Q-9")) == [str(other.pk)]


def test_imaging_studies_by_patient_date_and_identifier(alice, record):
    client = token_client(alice)
    scan, earlier = str(record["scan"].study_id), str(record["earlier"].study_id)
    assert ids(get(client, "/fhir/ImagingStudy", patient=record["patient"].pk)) == [scan, earlier]
    assert ids(get(client, "/fhir/ImagingStudy?date=ge2026-01-01")) == [scan]
    assert ids(get(client, "/fhir/ImagingStudy?date=le2025-12")) == [earlier]
    assert ids(get(client, "/fhir/ImagingStudy?started=2025")) == [earlier]
    assert ids(get(client, "/fhir/ImagingStudy?date=ge2025-03-04&date=lt2025-03-05")) == [earlier]
    assert ids(get(client, "/fhir/ImagingStudy?date=2025-03-04,2026-11-01")) == [scan, earlier]
    assert get(client, "/fhir/ImagingStudy?date=gt2026-11-01")["total"] == 0
    assert get(client, "/fhir/ImagingStudy?identifier=urn:dicom:uid|urn:oid:1.2.3")["total"] == 0


def test_a_search_by_study_instance_uid_finds_one_imaging_study_with_all_its_series(alice, record):
    lung, mediastinum = dicom_study(record["patient"], alice, sizes=(3, 2), study_uid="1.2.826.0.1.78")
    client = token_client(alice)
    for identifier in ("urn:dicom:uid|urn:oid:1.2.826.0.1.78", "urn:oid:1.2.826.0.1.78", "A-78", "|A-78"):
        bundle = get(client, "/fhir/ImagingStudy", identifier=identifier)
        assert (bundle["total"], ids(bundle)) == (1, [str(lung.study_id)]), identifier
        (entry,) = bundle["entry"]
        assert entry["resource"]["numberOfSeries"] == 2 and entry["resource"]["numberOfInstances"] == 5
        assert {s["uid"] for s in entry["resource"]["series"]} == {
            lung.series_instance_uid,
            mediastinum.series_instance_uid,
        }
    # The patient's studies: the two-series one and the record's two, each once.
    assert get(client, "/fhir/ImagingStudy", patient=record["patient"].pk)["total"] == 3
    assert get(client, "/fhir/ImagingStudy", identifier=f"urn:oid:{lung.series_instance_uid}")["total"] == 0


def test_reports_and_observations_point_to_the_study_of_their_series(alice, record):
    lung, mediastinum = dicom_study(record["patient"], alice, sizes=(1, 1))
    client = token_client(alice)
    study = f"ImagingStudy/{lung.study_id}"
    for scan in (lung, mediastinum):
        prediction = scan.predictions.get()
        Prediction.objects.filter(pk=prediction.pk).update(
            status="succeeded", suspicion=0.4, finding="Benign."
        )
        report = get(client, f"/fhir/DiagnosticReport/prediction-{prediction.pk}")
        assert report["imagingStudy"] == [{"reference": study}]
        observation = get(client, f"/fhir/Observation/prediction-{prediction.pk}-suspicion")
        assert observation["derivedFrom"] == [{"reference": study}]
    assert get(client, f"/fhir/{study}")["numberOfSeries"] == 2


def test_reports_by_patient_status_and_date(alice, record):
    client = token_client(alice)
    prediction, first, correction = record["prediction"].pk, record["first"].pk, record["correction"].pk
    earlier = record["earlier"].predictions.get().pk
    everything = get(client, "/fhir/DiagnosticReport", patient=f"Patient/{record['patient'].pk}")
    assert everything["total"] == 4
    assert set(ids(everything)) == {
        f"prediction-{prediction}",
        f"prediction-{earlier}",
        f"review-{first}",
        f"review-{correction}",
    }
    assert ids(get(client, "/fhir/DiagnosticReport?status=amended")) == [f"review-{correction}"]
    assert ids(get(client, "/fhir/DiagnosticReport?status=final")) == [f"review-{first}"]
    assert set(ids(get(client, "/fhir/DiagnosticReport?status=final,amended"))) == {
        f"review-{first}",
        f"review-{correction}",
    }
    assert get(client, "/fhir/DiagnosticReport?status=preliminary")["total"] == 2
    assert get(client, "/fhir/DiagnosticReport?status=cancelled")["total"] == 0
    assert set(ids(get(client, "/fhir/DiagnosticReport?date=lt2026-01-01"))) == {f"prediction-{earlier}"}
    assert get(client, "/fhir/DiagnosticReport?date=2026-11-01&status=preliminary")["total"] == 1


def test_observations_by_patient_and_code(alice, record):
    client = token_client(alice)
    assert get(client, "/fhir/Observation", patient=record["patient"].pk)["total"] == 8
    suspicions = get(client, "/fhir/Observation?code=malignancy-suspicion")
    assert {e["resource"]["code"]["coding"][0]["code"] for e in suspicions["entry"]} == {
        "malignancy-suspicion"
    }
    assert suspicions["total"] == 2
    both = get(
        client, "/fhir/Observation?code=urn:lungportal:fhir:code|probability-malignant,malignancy-suspicion"
    )
    assert both["total"] == 4
    assert get(client, "/fhir/Observation?code=http://loinc.org|malignancy-suspicion")["total"] == 0


def test_paging_follows_next_and_previous_links(alice, record):
    client = token_client(alice)
    first = get(client, "/fhir/DiagnosticReport?_count=3&status=preliminary,final,amended")
    assert first["total"] == 4 and len(first["entry"]) == 3
    links = {link["relation"]: link["url"] for link in first["link"]}
    assert "previous" not in links and urlsplit(links["self"]).query.endswith("_count=3&_offset=0")
    second = get(client, links["next"])
    assert len(second["entry"]) == 1 and "status=preliminary%2Cfinal%2Camended" in links["next"]
    second_links = {link["relation"]: link["url"] for link in second["link"]}
    assert "next" not in second_links
    assert ids(get(client, second_links["previous"])) == ids(first)
    assert set(ids(first)) | set(ids(second)) == set(ids(get(client, "/fhir/DiagnosticReport?_count=100")))
    assert [e["fullUrl"] for e in second["entry"]] == [
        resource_url(None, "DiagnosticReport", ids(second)[0]).replace("/fhir/", "http://testserver/fhir/", 1)
    ]
    assert get(client, "/fhir/DiagnosticReport?_count=0")["entry"] == []
    assert get(client, "/fhir/DiagnosticReport?_offset=50")["entry"] == []


def test_a_webhooks_link_leads_to_a_report_naming_the_mrn(alice, record):
    url = resource_url(None, "DiagnosticReport", f"review-{record['correction'].pk}")
    report = get(token_client(alice), url)
    assert report["subject"]["identifier"]["value"] == record["patient"].mrn
    assert report["status"] == "amended"


@pytest.mark.parametrize(
    "query",
    [
        "date=yesterday",
        "date=2026-02-30",
        "date=ap2026-01-01",
        "date=ge0000",
        "_count=1000000000000000000000000000000",
        "_count=101",
        "_count=-1",
        "_count=1&_count=2",
        "_offset=x",
        "patient=%00",
        "patient=Patient/1%00",
        "patient=abc",
        "status=%00final",
        "status=done",
        "status=final,,amended",
        "name%00=x",
        "status=" + "final," * 30,
        "patient=" + "1" * 300,
        "_id=a/b",
        "_lastUpdated=yesterday",
        "_lastUpdated=2026-02-30",
        "_lastUpdated=2026-01-01T10:00%2B25:00",
        "_summary=everything",
        "_total=exact",
        "_sort=,",
        "_sort=date&_sort=-date",
        "code=|",
    ],
)
@pytest.mark.parametrize("handling", ["lenient", "strict"])
def test_malformed_values_are_400_outcomes_however_handled(alice, record, query, handling):
    client = token_client(alice)
    url = "/fhir/Observation" if query.startswith("code") else "/fhir/DiagnosticReport"
    response = client.get(f"{url}?{query}", HTTP_PREFER=f"handling={handling}")
    assert response.status_code == 400, (query, response.content[:300])
    assert response["Content-Type"].startswith(FHIR_JSON)
    body = valid(response.json())
    assert body["issue"][0]["code"] in {"invalid", "not-supported"}


@pytest.mark.parametrize("resource_type", ["Patient", "ImagingStudy", "Observation", "Device"])
def test_strict_handling_refuses_what_a_type_does_not_search(alice, resource_type):
    response = token_client(alice).get(f"/fhir/{resource_type}?nonsense=1", HTTP_PREFER="handling=strict")
    outcome(response.json(), "not-supported")
    assert response.status_code == 400 and "'nonsense'" in response.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    "url",
    ["/fhir/DiagnosticReport", "/fhir/ImagingStudy", "/fhir/Observation", "/fhir/Patient", "/fhir/Device"],
)
def test_searches_take_as_many_queries_for_many_records_as_for_few(alice, patient, url):
    client = token_client(alice)
    url += "?_include=DiagnosticReport:subject&_sort=-_lastUpdated" if "Report" in url else ""
    sign(study(patient, alice, suspicion=0.7), alice, "malignant")
    client.get(url)  # the first request warms what is cached per process
    with CaptureQueriesContext(connection) as few:
        get(client, url)
    for day in range(2, 6):
        scan = study(patient, alice, suspicion=0.3, study_date=date(2026, 10, day))
        sign(scan, alice, "benign")
    dicom_study(patient, alice, sizes=(2, 1, 1))  # a study of several series costs no more either
    with CaptureQueriesContext(connection) as many:
        get(client, url)
    assert len(many) == len(few), [q["sql"] for q in many.captured_queries]
    assert len(many) <= 10
