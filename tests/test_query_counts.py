"""The pages and API endpoints `bench/pages.py` measures answer with a bounded number of queries:
the same at 2 rows as at 12, under a ceiling. (The worklist, the patient list and the API patient
list are pinned beside their other tests: tests/reading/test_worklist.py, tests/cases/.)"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from knox.models import AuthToken

from cases.models import Scan
from cases.selectors import HISTORY_STUDIES_PER_PAGE
from tests.factories import PatientFactory
from tests.fhir_api.studies import dicom_study
from tests.reading.studies import sign, study


def _queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(captured.captured_queries)


@pytest.fixture
def page(client, alice):
    client.force_login(alice)
    return client


@pytest.fixture
def api(alice):
    """A client with a real token: its two queries (the token, the user) are counted too."""
    return Client(headers={"Authorization": f"Token {AuthToken.objects.create(alice)[1]}"})


def _pinned(client: Client, url: Callable[[], str], add_rows: Callable[[int], Any], ceiling: int) -> None:
    """Ceilings, pages: session, user, the view's queries, the session's save; API: the token and
    its user instead of the session. (The audit trail's write is counted in bench/pages.py.)"""
    add_rows(2)
    client.get(url())  # warm-up: what a process does once (the model version, content types)
    few = _queries(client, url())
    assert few <= ceiling
    add_rows(10)
    assert _queries(client, url()) == few


def _studies(patient: Any, user: Any, *, read: bool = True) -> Callable[[int], None]:
    """Adds n studies of the patient, every other one signed (and every fourth amended)."""

    def add(n: int) -> None:
        for i in range(n):
            scan = study(patient, user, suspicion=(i + 1) / (n + 1), study_date=date(2026, 1, 1 + i))
            if read and i % 2:
                review = sign(scan, user, "benign")
                if i % 4 == 1:
                    sign(scan, user, "malignant", amends=review)

    return add


def _matching_patients(team: Any, user: Any) -> Callable[[int], None]:
    def add(n: int) -> None:
        for _ in range(n):
            patient = PatientFactory(team=team, name=f"Match {PatientFactory.build().name}")
            study(patient, user, suspicion=0.5, slices=1)

    return add


FILTERED = "?reading=unread&state=succeeded&study_from=2020-01-01"


@pytest.mark.parametrize(("kind", "url", "ceiling"), [("page", "/", 10), ("api", "/api/v1/worklist/", 5)])
def test_filtered_worklist_queries_do_not_grow_with_rows(request, alice, patient, kind, url, ceiling):
    _pinned(request.getfixturevalue(kind), lambda: url + FILTERED, _studies(patient, alice), ceiling)


@pytest.mark.parametrize(
    ("kind", "url", "ceiling"),
    [
        ("page", "/patients/?q=match", 9),
        ("page", "/patients/?q=MRN", 9),
        ("api", "/api/v1/patients/?q=match", 6),
        ("api", "/api/v1/patients/?q=MRN", 6),
    ],
)
def test_search_queries_do_not_grow_with_rows(request, alice, team_a, kind, url, ceiling):
    _pinned(request.getfixturevalue(kind), lambda: url, _matching_patients(team_a, alice), ceiling)


def test_late_patient_list_page_costs_what_the_first_does(page, api, alice, team_a):
    for _ in range(30):
        PatientFactory(team=team_a)
    _matching_patients(team_a, alice)(2)
    page.get("/patients/")
    assert _queries(page, "/patients/?page=2") == _queries(page, "/patients/")
    assert _queries(api, "/api/v1/patients/?page=2") == _queries(api, "/api/v1/patients/")


@pytest.mark.parametrize(
    ("kind", "url", "ceiling"),
    [("page", "/patients/{}/", 16), ("api", "/api/v1/patients/{}/history/", 10)],
)
def test_patient_history_queries_do_not_grow_with_studies(request, alice, patient, kind, url, ceiling):
    """Beside the view's own: the page's count, its studies, their series, predictions, readings,
    the reports' addenda (and on the page the series' first slices)."""
    _pinned(request.getfixturevalue(kind), lambda: url.format(patient.pk), _studies(patient, alice), ceiling)


def test_two_series_of_a_study_cost_what_one_does(api, alice, patient):
    """A study's second series adds rows to the same queries, not queries."""
    _studies(patient, alice)(2)
    url = f"/api/v1/patients/{patient.pk}/history/"
    api.get(url)
    before = _queries(api, url)
    dicom_study(patient, alice, sizes=(2, 1))
    assert _queries(api, url) == before


def test_late_history_page_costs_what_the_first_does(page, api, alice, patient):
    _studies(patient, alice)(HISTORY_STUDIES_PER_PAGE + 2)
    for client, url in ((page, f"/patients/{patient.pk}/"), (api, f"/api/v1/patients/{patient.pk}/history/")):
        client.get(url)
        assert _queries(client, url + "?page=2") == _queries(client, url)


@pytest.mark.parametrize(
    ("kind", "url", "ceiling"),
    [
        # the readings' addenda (+1); on the pages also the study's readings and their addenda (+2)
        ("page", "/scans/{scan}/", 15),
        ("api", "/api/v1/scans/{scan}/", 9),
        ("page", "/predictions/{prediction}/", 13),
        ("api", "/api/v1/predictions/{prediction}/", 8),
    ],
)
def test_scan_and_prediction_queries_do_not_grow_with_slices_and_readings(
    request, alice, bob, patient, kind, url, ceiling
):
    """Rows here: a study's slices, their results, its readings (a report and a second opinion,
    each amended) and other predictions' studies of the patient."""
    scans: list[Scan] = []

    def add(n: int) -> None:
        scan = study(patient, alice, suspicion=0.7, slices=n)
        for reader, kind in ((alice, "report"), (bob, "second_opinion"))[: 1 + (n > 2)]:
            sign(scan, reader, "benign", amends=sign(scan, reader, "malignant", kind=kind))
        scans.append(scan)

    def target() -> str:
        scan = scans[-1]
        return url.format(scan=scan.pk, prediction=scan.predictions.get().pk)

    _pinned(request.getfixturevalue(kind), target, add, ceiling)
