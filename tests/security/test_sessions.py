"""Issue 11: sessions had an idle timeout only; one kept busy lived for ever."""

from django.test import Client
from django.urls import reverse

from lungportal.sessions import LOGIN_AT
from tests.factories import PASSWORD


def log_in(client: Client) -> None:
    assert client.post(reverse("login"), {"username": "alice", "password": PASSWORD}).status_code == 302


def age_login(client: Client, seconds: int) -> None:
    """Move the session's login this many seconds into the past."""
    session = client.session
    session[LOGIN_AT] -= seconds
    session.save()


def test_a_busy_session_still_ends_its_absolute_limit_after_login(client, alice, settings):
    log_in(client)
    assert client.get(reverse("cases:dashboard")).status_code == 200
    age_login(client, settings.SESSION_ABSOLUTE_SECONDS - 60)
    assert client.get(reverse("cases:dashboard")).status_code == 200  # busy, and within the limit
    age_login(client, 120)

    response = client.get(reverse("cases:dashboard"))

    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert client.get(reverse("cases:dashboard")).status_code == 302  # logged out, not just redirected once


def test_an_api_request_on_an_expired_session_gets_401(client, alice, settings):
    log_in(client)
    assert client.get(reverse("api:patient-list")).status_code == 200
    age_login(client, settings.SESSION_ABSOLUTE_SECONDS + 1)
    response = client.get(reverse("api:patient-list"))
    assert response.status_code == 401
    assert response.json() == {"detail": "Your session has ended; log in again.", "errors": {}}


def test_logging_in_again_restarts_the_clock(client, alice, settings):
    log_in(client)
    age_login(client, settings.SESSION_ABSOLUTE_SECONDS - 10)
    log_in(client)  # the same user, the same browser
    age_login(client, 60)
    assert client.get(reverse("cases:dashboard")).status_code == 200


def test_a_session_without_a_login_time_gets_one(client, alice):
    client.force_login(alice)
    session = client.session
    session.pop(LOGIN_AT, None)  # from before the limit existed
    session.save()
    assert client.get(reverse("cases:dashboard")).status_code == 200
    assert isinstance(client.session[LOGIN_AT], int)
