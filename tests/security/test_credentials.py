"""Issue 11: a changed password or a disabled account must end every token and session for good."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from audit.models import AuditEntry
from tests.factories import PASSWORD

from .tokens import answers, token_for

NEW_PASSWORD = "Pulmonary-Nodule-42"


def logged_in_browser(user) -> Client:
    browser = Client()
    assert (
        browser.post(reverse("login"), {"username": user.username, "password": PASSWORD}).status_code == 302
    )
    return browser


def dashboard(browser: Client) -> int:
    return browser.get(reverse("cases:dashboard")).status_code


def test_password_change_page_ends_old_tokens_and_other_sessions_but_keeps_this_one(alice):
    token = token_for(alice)
    laptop, stolen = logged_in_browser(alice), logged_in_browser(alice)
    assert answers(token) == 200 and dashboard(stolen) == 200

    response = laptop.post(
        reverse("password_change"),
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )

    assert response.status_code == 302
    assert answers(token) == 401
    assert dashboard(stolen) == 302
    assert dashboard(laptop) == 200  # the session that changed the password goes on
    entry = AuditEntry.objects.get(action="token_revoke", object_id=alice.pk)
    assert entry.user == alice and "1 API token(s)" in entry.detail and "password changed" in entry.detail


def test_admin_password_change_ends_tokens_and_sessions(client, admin_user, alice):
    token, browser = token_for(alice), logged_in_browser(alice)
    client.force_login(admin_user)
    response = client.post(
        reverse("admin:auth_user_password_change", args=[alice.pk]),
        {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )
    assert response.status_code == 302
    assert answers(token) == 401 and dashboard(browser) == 302
    assert dashboard(client) == 200  # the admin's own session is untouched
    assert AuditEntry.objects.get(action="token_revoke", object_id=alice.pk).user == admin_user


def test_set_password_in_a_shell_or_command_ends_tokens(alice):
    token = token_for(alice)
    alice.set_password(NEW_PASSWORD)
    alice.save()
    assert answers(token) == 401
    assert not AuthToken.objects.filter(user=alice).exists()


def test_disabled_then_enabled_user_gets_no_old_token_or_session_back(client, admin_user, alice):
    token, browser = token_for(alice), logged_in_browser(alice)
    client.force_login(admin_user)
    change = reverse("admin:auth_user_change", args=[alice.pk])
    form = {"username": "alice", "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00"}

    assert client.post(change, {**form, "is_active": ""}).status_code == 302  # disabled in admin
    alice.refresh_from_db()
    assert not alice.is_active
    assert client.post(change, {**form, "is_active": "on"}).status_code == 302  # and enabled again
    alice.refresh_from_db()
    assert alice.is_active

    assert answers(token) == 401
    assert dashboard(browser) == 302
    assert "user disabled" in AuditEntry.objects.get(action="token_revoke", object_id=alice.pk).detail


def test_a_user_disabled_behind_the_signals_back_is_cleared_when_enabled_again(alice):
    token = token_for(alice)
    get_user_model().objects.filter(pk=alice.pk).update(is_active=False)  # a bulk update: no signal
    alice.refresh_from_db()
    alice.is_active = True
    alice.save()
    assert answers(token) == 401


def test_last_login_and_other_saves_leave_tokens_alone(client, alice, bob):
    token = token_for(alice)
    logged_in_browser(alice)  # updates last_login with update_fields
    alice.first_name = "Alice"
    alice.save()
    assert answers(token) == 200
    assert not AuditEntry.objects.filter(action="token_revoke").exists()


def test_a_password_rehash_on_login_is_not_a_password_change(settings, alice):
    token = token_for(alice)
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
        "django.contrib.auth.hashers.MD5PasswordHasher",
    ]
    before = alice.password
    logged_in_browser(alice)
    alice.refresh_from_db()
    assert alice.password != before and alice.password.startswith("pbkdf2_")  # upgraded
    assert answers(token) == 200


@pytest.mark.parametrize("update_fields", [None, ["password"]], ids=["save()", "save(update_fields)"])
def test_a_password_hash_set_directly_ends_tokens_and_sessions(alice, update_fields):
    """`user.password = make_password(...)` skips `set_password`; the save still sees the change."""
    token, browser = token_for(alice), logged_in_browser(alice)
    alice.password = make_password(NEW_PASSWORD)
    alice.save(update_fields=update_fields)
    assert answers(token) == 401
    assert dashboard(browser) == 302
    assert "password changed" in AuditEntry.objects.get(action="token_revoke", object_id=alice.pk).detail


def test_revoking_only_touches_the_user_concerned(alice, bob):
    alice_token, bob_token = token_for(alice), token_for(bob)
    bob_browser = logged_in_browser(bob)
    alice.is_active = False
    alice.save()
    assert answers(alice_token) == 401
    assert answers(bob_token) == 200 and dashboard(bob_browser) == 200


def test_25_logins_leave_no_more_live_tokens_than_the_limit(alice, settings):
    attempts = 25
    limit = settings.REST_KNOX["TOKEN_LIMIT_PER_USER"]
    earlier = [token_for(alice), token_for(alice)]
    api = APIClient()
    issued = []
    for n in range(attempts):  # from many addresses, so that the login throttle is not what stops it
        response = api.post(
            reverse("api:token"),
            {"username": "alice", "password": PASSWORD},
            format="json",
            REMOTE_ADDR=f"10.0.1.{n}",
        )
        assert response.status_code == 200, response.content
        issued.append(response.json()["token"])

    assert AuthToken.objects.filter(user=alice).count() == limit
    assert answers(issued[-1]) == 200  # the newest login always works
    assert [answers(t) for t in earlier] == [401, 401]  # the oldest made room for it
    revocations = AuditEntry.objects.filter(action="token_revoke", object_id=alice.pk)
    assert revocations.count() == attempts + len(earlier) - limit


def test_expired_tokens_are_cleared_at_login(alice):
    expired = AuthToken.objects.create(alice, expiry=timedelta(seconds=1))[0]
    AuthToken.objects.filter(digest=expired.digest).update(expiry=timezone.now() - timedelta(hours=1))
    response = APIClient().post(
        reverse("api:token"), {"username": "alice", "password": PASSWORD}, format="json"
    )
    assert response.status_code == 200
    assert not AuthToken.objects.filter(digest=expired.digest).exists()


def test_promotion_to_staff_revokes_tokens_issued_without_a_second_factor(alice):
    from knox.models import AuthToken

    AuthToken.objects.create(alice)
    alice.is_staff = True
    alice.save()
    assert not AuthToken.objects.filter(user=alice).exists()
