"""Logs are JSON lines carrying the request id, from the web server into the worker's task, and
never a patient's name, MRN or an uploaded file's name."""

from __future__ import annotations

import io
import json
import logging

import pytest
from django.urls import reverse
from knox.models import AuthToken
from rest_framework.test import APIClient

from cases.models import Patient
from lungportal.request_log import HEADER, RequestIdFilter
from tests.conftest import dataset_slice, upload, wait_for, wait_for_prediction


@pytest.fixture
def console_lines():
    """What the configured console handler writes, as parsed JSON lines."""
    handler = next(
        h
        for h in logging.getLogger().handlers
        if isinstance(h, logging.StreamHandler) and any(isinstance(f, RequestIdFilter) for f in h.filters)
    )
    stream = io.StringIO()
    previous = handler.setStream(stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    handler.setStream(previous)


def test_a_response_carries_the_request_id_a_client_sent_or_a_new_one(client):
    assert client.get("/healthz", headers={HEADER: "lb-7f3a.42"})[HEADER] == "lb-7f3a.42"
    made = client.get("/healthz")[HEADER]
    assert len(made) == 32 and int(made, 16) >= 0
    for hostile in ('a" "level": "CRITICAL', "x" * 65, "id\nforged line"):
        answer = client.get("/healthz", headers={HEADER: hostile})[HEADER]
        assert answer != hostile and len(answer) == 32


def test_a_log_line_of_a_request_is_json_with_its_id(logged_in, console_lines):
    logged_in.get("/patients/999999/", headers={HEADER: "trace-404"})  # Django logs the 404

    line = next(entry for entry in console_lines() if entry["logger"] == "django.request")
    assert line["request_id"] == "trace-404" and line["level"] == "WARNING"
    assert {"time", "message"} <= line.keys()


def test_a_refused_search_logs_its_path_not_the_name_searched_for(logged_in, console_lines):
    """Django logs a 4xx with the request as an extra; its text would carry the query string."""
    answer = logged_in.get("/api/v1/patients/", {"q": "Zebedee Quixotic", "page": "99"})
    assert answer.status_code == 404  # no such page: Django logs it

    lines = [entry for entry in console_lines() if entry["logger"] == "django.request"]
    assert lines and "/api/v1/patients/" in lines[0]["message"]
    assert "Zebedee" not in json.dumps(lines)


@pytest.mark.django_db(transaction=True)
def test_the_request_id_follows_an_upload_into_the_worker_and_no_patient_data_is_logged(
    worker, alice, team_a, console_lines
):
    patient = Patient.objects.create(
        team=team_a, name="Zebedee Quixotic", mrn="MRN-LOG-7731", birth_date="1950-01-02"
    )
    _, token = AuthToken.objects.create(alice)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    file_name = "zebedee-quixotic-chest.jpg"
    response = api.post(
        reverse("api:patient-scans", args=[patient.pk]),
        {"files": [upload(file_name, dataset_slice("malignant/Malignant case (1).jpg"), "image/jpeg")]},
        format="multipart",
        headers={HEADER: "upload-trace-1"},
    )
    assert response.status_code == 202, response.content
    wait_for_prediction(
        response.json()["prediction"]["id"], timeout=240, worker=worker
    )  # a cold worker loads the models

    def traced() -> list[dict]:
        lines = [json.loads(line) for line in worker.log.read_text().splitlines() if line.startswith("{")]
        return [line for line in lines if line.get("request_id") == "upload-trace-1"]

    # Celery logs the task's success once it has returned: after the result is in the database.
    wait_for(
        lambda: any("succeeded" in line["message"] for line in traced()),
        timeout=30,
        message=f"no log line of the task carries the upload's request id:\n{worker.logs()}",
    )
    web_and_worker = json.dumps(console_lines()) + worker.log.read_text()
    for secret in ("Zebedee", "Quixotic", "MRN-LOG-7731", "zebedee-quixotic"):
        assert secret not in web_and_worker
