"""Changes, uploads, reruns, reviews, team moves and account events are in the trail, written in
the transaction of the change they record."""

import pytest
from django.urls import reverse
from knox.models import AuthToken
from rest_framework.test import APIClient

from audit.models import AuditEntry
from cases import services
from cases.models import Prediction, PredictionRun
from tests.conftest import image_bytes, upload
from tests.factories import PASSWORD

from .conftest import entries, only_entry


def test_patient_created_and_changed_on_the_page_records_each_field(client, alice, team_a):
    client.force_login(alice)
    data = {"team": team_a.pk, "mrn": "A-1", "name": "Ann Lee", "birth_date": "1970-02-03", "sex": "F"}
    response = client.post(reverse("cases:patient_create"), data)
    assert response.status_code == 302
    created = only_entry(action="create", object_type="patient")
    assert created.changes["mrn"] == [None, "A-1"] and created.changes["birth_date"] == [None, "1970-02-03"]
    assert (created.user, created.channel, created.patient_id) == (alice, "page", created.object_id)

    response = client.post(
        reverse("cases:patient_edit", args=[created.object_id]), {**data, "name": "Ann Li"}
    )
    assert response.status_code == 302, response.context["form"].errors
    changed = only_entry(action="change")
    assert changed.changes == {"name": ["Ann Lee", "Ann Li"]}


def test_patient_change_through_the_api_records_before_and_after(api_as, alice, patient):
    response = api_as(alice).patch(
        reverse("api:patient-detail", args=[patient.pk]), {"birth_date": "1961-01-01"}, format="json"
    )
    assert response.status_code == 200
    entry = only_entry(action="change")
    assert entry.changes == {"birth_date": ["1960-05-17", "1961-01-01"]}
    assert (entry.channel, entry.user) == ("api", alice)


def test_moving_a_patient_to_another_team_is_a_team_move(alice, team_a, team_b, patient):
    team_b.members.add(alice)
    services.patient_update(patient=patient, updated_by=alice, team=team_b)
    entry = only_entry(action="team_move")
    assert entry.changes == {"team": [str(team_a), str(team_b)]}


def test_a_refused_change_leaves_no_entry(api_as, alice, patient):
    response = api_as(alice).patch(
        reverse("api:patient-detail", args=[patient.pk]), {"mrn": "bad mrn!"}, format="json"
    )
    assert response.status_code == 400
    assert not entries(action="change")


def test_upload_is_recorded_through_page_and_api(
    client, api_as, alice, patient, django_capture_on_commit_callbacks
):
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=False):
        client.post(
            reverse("cases:scan_upload", args=[patient.pk]), {"files": [upload("a.png", image_bytes())]}
        )
        api_as(alice).post(
            reverse("api:patient-scans", args=[patient.pk]),
            {"files": [upload("b.png", image_bytes())]},
            format="multipart",
        )
    uploads = entries(action="upload")
    assert [(e.channel, e.object_type, e.patient_id, e.user) for e in uploads] == [
        ("page", "scan", patient.pk, alice),
        ("api", "scan", patient.pk, alice),
    ]


def test_a_refused_upload_leaves_no_entry(client, alice, patient):
    client.force_login(alice)
    response = client.post(
        reverse("cases:scan_upload", args=[patient.pk]), {"files": [upload("a.png", b"nope")]}
    )
    assert response.status_code == 400
    assert not entries(action="upload")


def test_rerun_keeps_the_earlier_error_attempts_and_requester(alice, bob, prediction):
    Prediction.objects.filter(pk=prediction.pk).update(status="failed", error="disk on fire", attempts=3)
    prediction.refresh_from_db()
    services.prediction_rerun(prediction=prediction, requested_by=bob)
    earlier = PredictionRun.objects.get(prediction=prediction)
    assert (earlier.status, earlier.error, earlier.attempts) == ("failed", "disk on fire", 3)
    assert (earlier.requested_by, earlier.rerun_by) == (alice, bob)
    prediction.refresh_from_db()
    assert (prediction.status, prediction.requested_by, prediction.error) == ("queued", bob, "")
    entry = only_entry(action="rerun")
    assert (entry.user, entry.object_id) == (bob, prediction.pk)


def test_earlier_runs_are_shown_on_the_prediction_page(client, alice, bob, prediction):
    Prediction.objects.filter(pk=prediction.pk).update(status="failed", error="disk on fire")
    prediction.refresh_from_db()
    services.prediction_rerun(prediction=prediction, requested_by=bob)
    client.force_login(alice)
    page = client.get(prediction.get_absolute_url()).content.decode()
    assert "Earlier runs (1)" in page and "disk on fire" in page


def test_review_and_its_correction_are_recorded(api_as, alice, slice_result):
    prediction = slice_result.prediction
    client = api_as(alice)
    url = reverse("api:prediction-reviews", args=[prediction.pk])
    first = client.post(url, {"verdict": "agree"}, format="json").json()
    second = client.post(
        url, {"verdict": "disagree", "label": "malignant", "supersedes": first["id"]}, format="json"
    )
    assert second.status_code == 201, second.json()
    reviews = entries(action="review")
    assert [(e.object_id, e.changes["label"]) for e in reviews] == [
        (first["id"], [None, "benign"]),
        (second.json()["id"], ["benign", "malignant"]),
    ]


def test_page_login_failure_lockout_and_logout_are_recorded(client, alice, settings):
    settings.AXES_FAILURE_LIMIT = 2
    login = reverse("login")
    client.post(login, {"username": "alice", "password": "wrong"}, REMOTE_ADDR="10.0.0.9")
    client.post(login, {"username": "alice", "password": "wrong"}, REMOTE_ADDR="10.0.0.9")
    failed = entries(action="login_failed")
    assert [(e.username, e.user, e.client_address, e.outcome) for e in failed] == [
        ("alice", None, "10.0.0.9", "failed")
    ] * 2
    assert only_entry(action="lockout").username == "alice"

    client.post(login, {"username": "alice", "password": PASSWORD}, REMOTE_ADDR="10.0.0.10")
    entry = only_entry(action="login")
    assert (entry.user, entry.channel, entry.client_address) == (alice, "page", "10.0.0.10")
    client.post(reverse("logout"))
    assert only_entry(action="logout").user == alice


def test_api_token_login_failure_and_revocations_are_recorded(alice):
    client = APIClient()
    client.post(reverse("api:token"), {"username": "alice", "password": "nope"}, format="json")
    assert only_entry(action="login_failed").username == "alice"
    token = client.post(
        reverse("api:token"), {"username": "alice", "password": PASSWORD}, format="json"
    ).json()
    login = only_entry(action="login")
    assert (login.user, login.channel) == (alice, "api")

    client.credentials(HTTP_AUTHORIZATION=f"Token {token['token']}")
    assert client.post(reverse("api:logout")).status_code == 204
    _, other = AuthToken.objects.create(alice)
    client.credentials(HTTP_AUTHORIZATION=f"Token {other}")
    assert client.post(reverse("api:logout-all")).status_code == 204
    revoked = entries(action="token_revoke")
    assert [(e.user, e.detail) for e in revoked] == [(alice, "this API token"), (alice, "every API token")]
    assert not entries(action="logout")


def test_admin_change_of_a_care_team_records_the_membership_before_and_after(
    client, admin_user, alice, bob, team_a
):
    client.force_login(admin_user)
    response = client.post(
        reverse("admin:cases_careteam_change", args=[team_a.pk]), {"name": team_a.name, "members": [alice.pk]}
    )
    assert response.status_code == 302
    entry = only_entry(action="team_move", object_type="careteam")
    assert entry.changes == {"members": [["alice", "bob"], ["alice"]]}
    assert (entry.user, entry.channel) == (admin_user, "admin")


def test_deactivating_a_user_in_admin_is_recorded(client, admin_user, alice):
    client.force_login(admin_user)
    page = client.get(reverse("admin:auth_user_change", args=[alice.pk]))
    form = page.context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None and name != "password"}
    data.update(
        is_active="",
        groups=[],
        user_permissions=[],
        last_login_0="",
        last_login_1="",
        date_joined_0="2026-01-01",
        date_joined_1="00:00:00",
    )
    data.pop("is_active")
    response = client.post(reverse("admin:auth_user_change", args=[alice.pk]), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    alice.refresh_from_db()
    assert not alice.is_active
    entry = only_entry(action="change", object_type="user")
    assert entry.changes["is_active"] == [True, False]


def test_a_change_whose_entry_cannot_be_written_is_undone(alice, patient, monkeypatch):
    """The entry is written in the change's transaction: no change is ever left without its entry."""

    def refuse(*args, **kwargs):
        raise RuntimeError("the audit table is unavailable")

    monkeypatch.setattr(AuditEntry, "save", refuse)
    with pytest.raises(RuntimeError):
        services.patient_update(patient=patient, updated_by=alice, name="Someone Else")
    patient.refresh_from_db()
    assert patient.name != "Someone Else"


def test_admin_never_writes_a_password_into_the_trail(client, admin_user, alice):
    client.force_login(admin_user)
    secret = "Sup3r-secret-pw!x"
    response = client.post(
        reverse("admin:auth_user_add"),
        {"username": "newbie", "password1": secret, "password2": secret, "usable_password": "true"},
    )
    assert response.status_code == 302
    created = only_entry(action="create", object_type="user")
    assert created.changes["username"] == [None, "newbie"]
    assert created.changes["password"] == ["(hidden)", "(changed)"]
    response = client.post(
        reverse("admin:auth_user_password_change", args=[alice.pk]),
        {"password1": secret, "password2": secret},
    )
    assert response.status_code == 302
    changed = only_entry(action="change", object_type="user", object_id=alice.pk)
    assert changed.changes == {"password": ["(hidden)", "(changed)"]}
    assert not AuditEntry.objects.filter(changes__icontains=secret).exists()
    assert secret not in str(list(AuditEntry.objects.values_list("changes", "detail")))


def test_add_user_command_is_recorded(db):
    services.user_create(username="dana", password="a-long-unusual-passphrase", team_name="Chest C")
    entry = only_entry(action="create", object_type="user")
    assert entry.changes["team"] == [None, "Chest C"] and entry.channel == "system"
