"""What a page, file or API answer must not give away: cacheable patient data, the API to
anonymous visitors, server paths."""

import re

import pytest
from django.urls import reverse
from rest_framework.test import APIClient


@pytest.mark.parametrize(
    ("url_name", "kind"),
    [
        ("cases:patient_detail", "patient"),
        ("cases:scan_detail", "scan"),
        ("cases:slice_image", "slice"),
        ("cases:slice_thumbnail", "slice"),
        ("api:patient-detail", "patient"),
        ("api:slice-file", "slice"),
        ("api:heatmap", "slice_result"),
    ],
)
def test_nothing_with_patient_data_may_be_cached(client, alice, objects, url_name, kind):
    client.force_login(alice)
    response = client.get(reverse(url_name, args=[objects[kind].pk]))
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"] and "max-age=3600" not in response["Cache-Control"]


def test_lists_and_errors_are_not_cached_either(client, alice):
    client.force_login(alice)
    for url in (reverse("cases:patient_list"), reverse("api:patient-list"), "/scans/999999/"):
        assert "no-store" in client.get(url)["Cache-Control"]


def test_the_browsable_api_does_not_answer_anonymous_visitors_with_a_page(client):
    response = client.get(reverse("api:patient-list"), HTTP_ACCEPT="text/html")
    assert response.status_code in (401, 406)
    assert b"<html" not in response.content.lower()
    assert APIClient().get(reverse("api:api-root")).status_code == 401


def test_failure_reasons_name_no_server_path():
    from cases.services.prediction_runs import without_paths

    reason = "[Errno 2] No such file or directory: '/srv/lungportal/var/media/slices/2026/11/ab12.jpg'"
    assert without_paths(reason) == "[Errno 2] No such file or directory: '…/ab12.jpg'"
    assert without_paths("Model v1 could not be loaded: /opt/weights/v1/member1.keras") == (
        "Model v1 could not be loaded: …/member1.keras"
    )
    assert without_paths("3/4 slices, ratio 1/2") == "3/4 slices, ratio 1/2"


def test_the_access_log_never_records_query_strings_or_referrers():
    from gunicorn.config import Config

    from lungportal import gunicorn_conf

    fmt = gunicorn_conf.access_log_format
    assert not re.search(r"%\((r|q|f|\{raw_uri\}e)\)s", fmt)  # request line, query, referrer
    assert "%(U)s" in fmt  # the path, without its query
    config = Config()
    config.set("access_log_format", fmt)  # gunicorn accepts it
    line = fmt % {
        "h": "10.0.0.1",
        "t": "[now]",
        "m": "GET",
        "U": "/patients/",
        "H": "HTTP/1.1",
        "s": 200,
        "B": 5,
        "M": 3,
    }
    assert "q=" not in line and line.startswith("10.0.0.1")
