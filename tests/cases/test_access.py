"""Every page for an owner, a teammate, an outsider, an admin in no team, and nobody logged in."""

import pytest
from django.urls import reverse

from tests.factories import PASSWORD

OBJECT_PAGES = [
    ("cases:patient_detail", "patient"),
    ("cases:patient_edit", "patient"),
    ("cases:scan_upload", "patient"),
    ("cases:scan_detail", "scan"),
    ("cases:prediction_detail", "prediction"),
    ("cases:slice_image", "slice"),
    ("cases:slice_thumbnail", "slice"),
    ("cases:slice_result_heatmap", "slice_result"),
]
PEOPLE = [("alice", 200), ("bob", 200), ("charlie", 404), ("admin_user", 404), (None, 302)]


def _client_for(client, request, who):
    if who is not None:
        client.force_login(request.getfixturevalue(who))
    return client


@pytest.mark.parametrize("who,expected", PEOPLE)
@pytest.mark.parametrize("url_name,kind", OBJECT_PAGES)
def test_object_pages_are_scoped_to_care_team(client, request, objects, url_name, kind, who, expected):
    url = reverse(url_name, args=[objects[kind].pk])
    response = _client_for(client, request, who).get(url)
    assert response.status_code == expected
    if who is None:
        assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("who,expected", PEOPLE)
@pytest.mark.parametrize("url_name", ["cases:dashboard", "cases:patient_list", "cases:patient_create"])
def test_list_pages_need_login_and_show_only_own_team(client, request, objects, url_name, who, expected):
    response = _client_for(client, request, who).get(reverse(url_name))
    if who is None:
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
        return
    assert response.status_code in (200, 302)  # patient_create redirects people in no team
    shows_patient = objects["patient"].name in response.content.decode()
    assert shows_patient == (expected == 200 and url_name != "cases:patient_create")


def test_patient_search_lists_only_own_team(client, charlie, patient, team_b):
    from tests.factories import PatientFactory

    PatientFactory(team=team_b, name="Zed Outsider", mrn=patient.mrn)
    client.force_login(charlie)
    body = client.get(reverse("cases:patient_list"), {"q": patient.mrn}).content.decode()
    assert "Zed Outsider" in body
    assert patient.name not in body


@pytest.mark.parametrize("who,expected", [("bob", 302), ("charlie", 404), ("admin_user", 404)])
def test_rerun_and_predict_are_scoped(client, request, prediction, who, expected):
    client.force_login(request.getfixturevalue(who))
    for url in (
        reverse("cases:prediction_rerun", args=[prediction.pk]),
        reverse("cases:scan_predict", args=[prediction.scan_id]),
    ):
        assert client.post(url).status_code == expected


def test_post_endpoints_redirect_anonymous_to_login(client, prediction):
    for url in (
        reverse("cases:prediction_rerun", args=[prediction.pk]),
        reverse("cases:scan_predict", args=[prediction.scan_id]),
    ):
        response = client.post(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_status_endpoint_hides_other_teams_predictions(client, alice, charlie, prediction):
    url = reverse("cases:prediction_status") + f"?ids={prediction.pk}"
    client.force_login(charlie)
    assert client.get(url).json() == {"predictions": {}}
    client.force_login(alice)
    assert client.get(url).json()["predictions"][str(prediction.pk)]["status"] == "queued"


def test_uploaded_files_are_served_privately_with_safe_headers(client, alice, scan):
    client.force_login(alice)
    item = scan.slices.first()
    response = client.get(reverse("cases:slice_image", args=[item.pk]))
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Disposition"] == f'inline; filename="slice-{item.pk}.png"'
    assert response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content).startswith(b"\x89PNG")


def test_login_logout_and_password_change(client, alice):
    assert client.post(reverse("login"), {"username": "alice", "password": PASSWORD}).status_code == 302
    response = client.post(
        reverse("password_change"),
        {"old_password": PASSWORD, "new_password1": "short", "new_password2": "short"},
    )
    assert response.status_code == 200 and "too short" in response.content.decode()
    response = client.post(
        reverse("password_change"),
        {
            "old_password": PASSWORD,
            "new_password1": "Pulmonary-Nodule-42",
            "new_password2": "Pulmonary-Nodule-42",
        },
    )
    assert response.status_code == 302
    client.post(reverse("logout"))
    assert client.get(reverse("cases:dashboard")).status_code == 302
    response = client.post(reverse("login"), {"username": "alice", "password": "Pulmonary-Nodule-42"})
    assert response.status_code == 302 and client.get(reverse("cases:dashboard")).status_code == 200


def test_repeated_failed_logins_lock_the_account_out(client, alice, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert client.post(reverse("login"), {"username": "alice", "password": "wrong"}).status_code == 200
    assert client.post(reverse("login"), {"username": "alice", "password": "wrong"}).status_code == 429
    response = client.post(
        reverse("login"), {"username": "alice", "password": PASSWORD}
    )  # even the right one
    assert response.status_code == 429
    assert "Too many failed logins" in response.content.decode()
    assert client.get(reverse("cases:dashboard")).status_code == 302


def test_disabling_a_user_ends_their_session(client, alice):
    client.force_login(alice)
    assert client.get(reverse("cases:dashboard")).status_code == 200
    alice.is_active = False
    alice.save()
    assert client.get(reverse("cases:dashboard")).status_code == 302


def test_status_endpoint_ignores_malformed_and_huge_ids(client, alice, prediction):
    client.force_login(alice)
    url = reverse("cases:prediction_status") + f"?ids=x,-1,99999999999999999999999,{prediction.pk}"
    response = client.get(url)
    assert response.status_code == 200
    assert list(response.json()["predictions"]) == [str(prediction.pk)]


@pytest.mark.parametrize("path", ["/patients/99999999999999999999/", "/api/v1/scans/99999999999999999999/"])
def test_huge_ids_are_404_not_a_database_error(client, alice, path):
    client.force_login(alice)
    assert client.get(path).status_code == 404


def test_an_expired_session_must_log_in_again(client, alice):
    from datetime import timedelta

    from django.contrib.sessions.models import Session
    from django.utils import timezone

    client.force_login(alice)
    assert client.get(reverse("cases:dashboard")).status_code == 200
    Session.objects.update(expire_date=timezone.now() - timedelta(seconds=1))  # idle past SESSION_COOKIE_AGE
    response = client.get(reverse("cases:dashboard"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_sessions_are_idle_timeouts(settings):
    assert settings.SESSION_SAVE_EVERY_REQUEST is True  # each request pushes the expiry forward
    assert settings.SESSION_COOKIE_AGE <= 8 * 60 * 60


def test_dashboard_query_count_does_not_grow_with_rows(
    client, alice, patient, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    from cases import services
    from tests.conftest import image_bytes, upload

    def add_scans(n):
        with django_capture_on_commit_callbacks(execute=False):
            for _ in range(n):
                services.scan_upload(
                    patient=patient, files=[upload("a.png", image_bytes())], uploaded_by=alice
                )

    client.force_login(alice)
    add_scans(2)
    with django_assert_max_num_queries(14) as few:
        body = client.get(reverse("cases:dashboard")).content.decode()
    assert body.count('<tr class="row-unread">') == 2
    add_scans(10)
    with django_assert_max_num_queries(len(few.captured_queries)):
        client.get(reverse("cases:dashboard"))
