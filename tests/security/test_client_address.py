"""Issue 11: throttles, lockouts and the audit trail trusted anyone's X-Forwarded-For; rotating it
gave 15 of 15 unthrottled API logins. And the login page had no per-address limit at all."""

import pytest
from axes.models import AccessAttempt
from django.test import RequestFactory
from django.urls import reverse
from rest_framework.test import APIClient

from audit.models import AuditEntry
from core.net import client_ip
from tests.factories import PASSWORD

ADDRESS = "203.0.113.7"


def forged(n: int) -> str:
    return f"198.51.100.{n}"


@pytest.mark.parametrize(
    "proxies,header,expected",
    [
        (0, "", ADDRESS),
        (0, "198.51.100.1", ADDRESS),  # no proxy: the header is the client's own invention
        (1, "198.51.100.1", "198.51.100.1"),
        (1, "6.6.6.6, 198.51.100.1", "198.51.100.1"),  # what the client wrote is left of ours
        (2, "6.6.6.6, 198.51.100.1, 10.0.0.2", "198.51.100.1"),
        (2, "198.51.100.1", ADDRESS),  # shorter than our proxies: proves nothing
        (1, " , ", ADDRESS),
    ],
)
def test_client_ip_trusts_only_our_own_proxies(settings, proxies, header, expected):
    settings.TRUSTED_PROXIES = proxies
    request = RequestFactory().get("/", REMOTE_ADDR=ADDRESS, HTTP_X_FORWARDED_FOR=header)
    assert client_ip(request) == expected


def test_rotating_x_forwarded_for_does_not_escape_the_api_login_throttle(db, settings):
    assert settings.TRUSTED_PROXIES == 0 and settings.REST_FRAMEWORK["NUM_PROXIES"] == 0
    api = APIClient()
    codes = [
        api.post(
            reverse("api:token"),
            {"username": f"user{n}", "password": "guess"},
            format="json",
            REMOTE_ADDR=ADDRESS,
            HTTP_X_FORWARDED_FOR=forged(n),
        ).status_code
        for n in range(15)
    ]
    assert codes[:10] == [400] * 10 and codes[10:] == [429] * 5


def test_rotating_x_forwarded_for_does_not_escape_the_page_login_limit(client, alice):
    codes = [
        client.post(
            reverse("login"),
            {"username": f"user{n}", "password": "guess"},  # spraying usernames: no lockout applies
            REMOTE_ADDR=ADDRESS,
            HTTP_X_FORWARDED_FOR=forged(n),
        )
        for n in range(11)
    ]
    assert [r.status_code for r in codes] == [200] * 10 + [429]
    refused = codes[-1]
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert "Too many login attempts" in refused.content.decode()
    # Even the right password waits: the limit is on attempts from the address.
    right = client.post(reverse("login"), {"username": "alice", "password": PASSWORD}, REMOTE_ADDR=ADDRESS)
    assert right.status_code == 429


def test_the_page_login_limit_is_per_address(client, alice):
    for n in range(10):
        client.post(reverse("login"), {"username": f"user{n}", "password": "guess"}, REMOTE_ADDR=ADDRESS)
    other = client.post(reverse("login"), {"username": "alice", "password": PASSWORD}, REMOTE_ADDR=forged(1))
    assert other.status_code == 302


def test_behind_a_trusted_proxy_the_page_limit_follows_the_forwarded_address(db, client, settings):
    settings.TRUSTED_PROXIES = 1
    proxy = "10.0.0.2"
    for n in range(10):
        client.post(
            reverse("login"),
            {"username": f"user{n}", "password": "guess"},
            REMOTE_ADDR=proxy,
            HTTP_X_FORWARDED_FOR=ADDRESS,
        )
    assert (
        client.post(
            reverse("login"),
            {"username": "x", "password": "y"},
            REMOTE_ADDR=proxy,
            HTTP_X_FORWARDED_FOR=ADDRESS,
        ).status_code
        == 429
    )
    others = client.post(
        reverse("login"),
        {"username": "x", "password": "y"},
        REMOTE_ADDR=proxy,
        HTTP_X_FORWARDED_FOR=forged(9),
    )
    assert others.status_code == 200  # another client behind the same proxy


def test_rotating_x_forwarded_for_does_not_escape_the_lockout(client, alice, settings):
    for n in range(settings.AXES_FAILURE_LIMIT):
        client.post(
            reverse("login"),
            {"username": "alice", "password": "wrong"},
            REMOTE_ADDR=ADDRESS,
            HTTP_X_FORWARDED_FOR=forged(n),
        )
    response = client.post(
        reverse("login"),
        {"username": "alice", "password": PASSWORD},
        REMOTE_ADDR=ADDRESS,
        HTTP_X_FORWARDED_FOR=forged(99),
    )
    assert response.status_code == 429 and "Too many failed logins" in response.content.decode()
    if settings.AXES_HANDLER.endswith("AxesDatabaseHandler"):  # with Redis they count in the cache
        assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {ADDRESS}
    else:
        assert not AccessAttempt.objects.exists()


def test_the_audit_trail_records_the_real_address(client, alice, settings):
    client.post(
        reverse("login"),
        {"username": "alice", "password": "wrong"},
        REMOTE_ADDR=ADDRESS,
        HTTP_X_FORWARDED_FOR=forged(1),
    )
    settings.TRUSTED_PROXIES = 1
    client.post(
        reverse("login"),
        {"username": "alice", "password": PASSWORD},
        REMOTE_ADDR="10.0.0.2",
        HTTP_X_FORWARDED_FOR=f"6.6.6.6, {ADDRESS}",
    )
    failed = AuditEntry.objects.get(action="login_failed")
    login = AuditEntry.objects.get(action="login")
    assert (failed.client_address, login.client_address) == (ADDRESS, ADDRESS)


def test_the_admin_login_shares_the_page_login_limit(client, alice):
    for n in range(10):
        client.post(
            reverse("admin:login"), {"username": f"user{n}", "password": "guess"}, REMOTE_ADDR=ADDRESS
        )
    refused = client.post(
        reverse("admin:login"), {"username": "admin", "password": "guess"}, REMOTE_ADDR=ADDRESS
    )
    assert refused.status_code == 429 and refused["Retry-After"]
    page = client.post(reverse("login"), {"username": "alice", "password": PASSWORD}, REMOTE_ADDR=ADDRESS)
    assert page.status_code == 429  # one counter for both doors
