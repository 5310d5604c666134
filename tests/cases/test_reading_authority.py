"""The patient list's "Latest result" is the latest study's signed reading, where there is one;
else the AI's result, marked as the AI's and unread; else the study's state. Its filter filters on
that same result and offers only results that can occur."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import pytest
from django.urls import reverse

from cases.models import Prediction
from tests.factories import PatientFactory
from tests.reading.studies import sign, study

pytestmark = pytest.mark.django_db


def latest_results(client, **query) -> dict[str, str]:
    """Each listed patient's "Latest result" cell, as text, by MRN."""
    response = client.get(reverse("cases:patient_list"), query)
    assert response.status_code == 200
    body = response.content.decode()
    rows = re.findall(
        r'<td data-label="MRN">([^<]*)</td>.*?<td data-label="Latest result">(.*?)</td>', body, re.S
    )
    return {mrn: " ".join(re.sub(r"<[^>]+>", " ", cell).split()) for mrn, cell in rows}


@pytest.fixture
def corrected(alice, bob, team_a):
    """A patient whose latest study the AI called malignant, signed malignant, then corrected to benign."""
    patient = PatientFactory(team=team_a, mrn="READ-1", name="Corrected Reading")
    study(patient, alice, suspicion=0.2, study_date=date(2026, 1, 5))  # an earlier study
    scan = study(patient, alice, suspicion=0.9, study_date=date(2026, 11, 1))
    first = sign(scan, alice, "malignant")
    sign(scan, bob, "benign", amends=first)
    return patient


def test_the_signed_reading_not_the_ai_label_is_the_latest_result(logged_in, alice, bob, corrected):
    cells = latest_results(logged_in)
    assert cells["READ-1"].startswith("Benign signed, amended")
    assert "alignant" not in cells["READ-1"]


def test_a_final_reading_reads_signed(logged_in, alice, patient):
    sign(study(patient, alice, suspicion=0.9), alice, "malignant")
    assert latest_results(logged_in)[patient.mrn].startswith("Malignant signed")
    assert "amended" not in latest_results(logged_in)[patient.mrn]


def test_the_filter_finds_the_reading_not_the_ai_label(logged_in, alice, corrected, team_a):
    unread = PatientFactory(team=team_a, mrn="AI-1", name="Unread Malignant")
    study(unread, alice, suspicion=0.95)
    assert set(latest_results(logged_in, result="benign")) == {"READ-1"}
    # The AI said malignant of both; only the unread one is still malignant.
    assert set(latest_results(logged_in, result="malignant")) == {"AI-1"}
    assert set(latest_results(logged_in)) == {"READ-1", "AI-1"}


def test_the_filter_reads_only_the_latest_study(logged_in, alice, team_a):
    patient = PatientFactory(team=team_a, mrn="OLD-1")
    sign(study(patient, alice, suspicion=0.9, study_date=date(2025, 1, 1)), alice, "malignant")
    study(patient, alice, suspicion=0.1, study_date=date(2026, 1, 1))
    Prediction.objects.filter(scan__study_date=date(2026, 1, 1)).update(label="")
    assert latest_results(logged_in, result="malignant") == {}
    assert latest_results(logged_in, result="not_malignant") == {"OLD-1": latest_results(logged_in)["OLD-1"]}
    assert latest_results(logged_in)["OLD-1"].startswith("AI: not malignant (unread)")


def test_ai_only_results_are_marked_as_the_ais_and_states_as_states(logged_in, alice, team_a):
    rows: dict[str, dict[str, Any]] = {
        "AI-M": dict(suspicion=0.95),
        "AI-N": dict(suspicion=0.1),
        "AI-X": dict(suspicion=None),  # no slice assessable
        "Q-1": dict(status="queued"),
        "F-1": dict(status="failed"),
    }
    for mrn, fields in rows.items():
        study(PatientFactory(team=team_a, mrn=mrn), alice, **fields)
    Prediction.objects.filter(scan__patient__mrn="AI-N").update(label="")  # benign/normal not told apart
    PatientFactory(team=team_a, mrn="NONE")
    cells = latest_results(logged_in)
    assert cells["AI-M"].startswith("AI: malignant (unread)")
    assert cells["AI-N"].startswith("AI: not malignant (unread)")
    assert cells["AI-X"].startswith("AI: not assessable")
    assert cells["Q-1"].startswith("Queued") and cells["F-1"].startswith("Failed")
    assert cells["NONE"] == "No scans"
    assert set(latest_results(logged_in, result="not_assessable")) == {"AI-X"}
    assert set(latest_results(logged_in, result="not_malignant")) == {"AI-N"}


def test_the_filter_offers_what_can_occur_and_says_when_a_value_is_unknown(logged_in, patient):
    body = logged_in.get(reverse("cases:patient_list")).content.decode()
    offered = re.findall(r'<option value="([^"]*)"', body)
    assert offered == ["", "normal", "benign", "malignant", "not_malignant", "not_assessable"]
    assert "AI: not malignant" in body and "AI: not assessable" in body
    unknown = logged_in.get(reverse("cases:patient_list"), {"result": "<b>cancer</b>"})
    assert unknown.status_code == 200
    text = unknown.content.decode()
    assert "There is no latest result called" in text and "<b>cancer" not in text
    assert patient.mrn in text


def test_another_teams_readings_are_not_listed(client, alice, charlie, corrected):
    client.force_login(charlie)
    assert latest_results(client) == {} and latest_results(client, result="benign") == {}


def test_the_list_costs_the_same_queries_with_more_studies_and_readings(
    logged_in, alice, bob, team_a, django_assert_max_num_queries
):
    def add(n: int) -> None:
        for i in range(n):
            patient = PatientFactory(team=team_a)
            scan = study(patient, alice, suspicion=0.9, study_date=date(2026, 1, 1 + i))
            study(patient, alice, suspicion=0.1, study_date=date(2025, 1, 1 + i))
            first = sign(scan, alice, "malignant")
            sign(scan, bob, "benign", amends=first)

    urls = [{}, {"result": "benign"}, {"result": "malignant", "q": "a"}]
    add(1)
    counts = []
    for query in urls:
        with django_assert_max_num_queries(9) as few:
            logged_in.get(reverse("cases:patient_list"), query)
        counts.append(len(few.captured_queries))
    add(6)
    for query, count in zip(urls, counts, strict=True):
        with django_assert_max_num_queries(count):
            logged_in.get(reverse("cases:patient_list"), query)


def test_the_api_gives_the_same_result_and_filters_on_it(alice, corrected, team_a):
    from rest_framework.test import APIClient

    study(PatientFactory(team=team_a, mrn="AI-1"), alice, suspicion=0.95)
    client = APIClient()
    client.force_authenticate(alice)

    def listed(**query):
        response = client.get(reverse("api:patient-list"), query)
        assert response.status_code == 200, response.json()
        return {p["mrn"]: p for p in response.json()["results"]}

    everyone = listed()
    read, unread = everyone["READ-1"], everyone["AI-1"]
    assert (read["latest_result"], read["latest_reading"], read["latest_label"]) == (
        "benign",
        "amended",
        "malignant",
    )
    assert (unread["latest_result"], unread["latest_reading"], unread["latest_label"]) == (
        "malignant",
        "unread",
        "malignant",
    )
    assert set(listed(latest_result="benign")) == {"READ-1"}
    assert set(listed(latest_result="malignant")) == {"AI-1"}
    assert set(listed(latest_label="malignant")) == {"READ-1", "AI-1"}  # the AI's label, as named
    bad = client.get(reverse("api:patient-list"), {"latest_result": "cancer"})
    assert bad.status_code == 400 and "latest_result" in bad.json()["errors"]
