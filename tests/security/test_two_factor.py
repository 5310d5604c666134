"""Staff, who see every team, give a second factor (TOTP) when STAFF_OTP_REQUIRED is on."""

import secrets
from base64 import b32encode

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils.html import escape
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from audit.models import AuditEntry
from tests.factories import PASSWORD
from tests.test_settings import manage
from twofactor import services

ENROL = "/accounts/2fa/enrol/"
VERIFY = "/accounts/2fa/verify/"


@pytest.fixture(autouse=True)
def staff_need_a_second_factor(settings):
    settings.STAFF_OTP_REQUIRED = True
    cache.clear()  # the token endpoint's throttle


def code(device: TOTPDevice, *, steps_ahead: int = 0) -> str:
    """The device's code now, or `steps_ahead` 30-second steps later (a code is accepted once)."""
    return f"{totp(device.bin_key, t0=-device.step * steps_ahead):06d}"


def confirmed_device_for(user) -> TOTPDevice:
    return TOTPDevice.objects.create(user=user, name="phone", confirmed=True)


def log_in(client, username: str) -> None:
    response = client.post(reverse("login"), {"username": username, "password": PASSWORD})
    assert response.status_code == 302, response.content


# --- pages ----------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/admin/", "/", "/patients/", "/agreement/"])
def test_staff_with_a_password_alone_is_sent_to_enrol(client, admin_user, path):
    log_in(client, "admin")
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith(ENROL) and "next=" in response["Location"]


def test_enrol_page_shows_a_qr_code_and_the_key_without_inline_script_or_style(client, admin_user):
    client.force_login(admin_user)
    response = client.get(ENROL)
    assert response.status_code == 200
    device = TOTPDevice.objects.get(user=admin_user)
    assert not device.confirmed
    body = response.content.decode()
    assert "<svg" in body and "<script>" not in body and "style=" not in body
    assert b32encode(device.bin_key).decode()[:4] in body
    assert client.get(ENROL).status_code == 200 and TOTPDevice.objects.filter(user=admin_user).count() == 1


def test_enrolment_with_the_right_code_confirms_the_device_and_lets_staff_in(client, admin_user):
    client.force_login(admin_user)
    client.get(ENROL)
    device = TOTPDevice.objects.get(user=admin_user)
    response = client.post(ENROL, {"code": code(device), "next": "/admin/"})
    assert response.status_code == 302 and response["Location"] == "/admin/"
    device.refresh_from_db()
    assert device.confirmed
    assert client.get("/admin/").status_code == 200
    assert client.get("/").status_code == 200
    assert AuditEntry.objects.filter(user=admin_user, detail="second factor enrolled").exists()


def test_enrolment_with_a_wrong_code_confirms_nothing(client, admin_user):
    client.force_login(admin_user)
    client.get(ENROL)
    device = TOTPDevice.objects.get(user=admin_user)
    wrong = f"{(int(code(device)) + 500_000) % 1_000_000:06d}"
    response = client.post(ENROL, {"code": wrong})
    assert response.status_code == 200 and escape(services.CODE_WRONG) in response.content.decode()
    device.refresh_from_db()
    assert not device.confirmed
    assert client.get("/admin/")["Location"].startswith(ENROL)


def test_after_logging_out_and_in_again_staff_must_verify(client, admin_user):
    client.force_login(admin_user)
    client.get(ENROL)
    device = TOTPDevice.objects.get(user=admin_user)
    client.post(ENROL, {"code": code(device)})
    client.post(reverse("logout"))

    log_in(client, "admin")
    response = client.get("/admin/")
    assert response.status_code == 302 and response["Location"].startswith(VERIFY)
    assert client.get(ENROL)["Location"].startswith(VERIFY)  # no second device with a password alone
    response = client.post(VERIFY, {"code": code(device, steps_ahead=1), "next": "/admin/"})
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    assert AuditEntry.objects.filter(
        user=admin_user, action=AuditEntry.Action.LOGIN, detail="second factor"
    ).exists()


def test_a_wrong_code_is_refused_recorded_and_throttled(client, admin_user):
    device = confirmed_device_for(admin_user)
    client.force_login(admin_user)
    right = code(device)
    wrong = f"{(int(right) + 500_000) % 1_000_000:06d}"
    response = client.post(VERIFY, {"code": wrong})
    assert response.status_code == 200 and escape(services.CODE_WRONG) in response.content.decode()
    failure = AuditEntry.objects.get(action=AuditEntry.Action.LOGIN_FAILED)
    assert failure.user_id == admin_user.pk and failure.detail == "wrong second-factor code"
    assert failure.outcome == AuditEntry.Outcome.FAILED

    response = client.post(VERIFY, {"code": right})  # straight after a failure: wait first
    assert escape(services.THROTTLED) in response.content.decode()
    assert AuditEntry.objects.filter(action=AuditEntry.Action.LOGIN_FAILED).count() == 2
    assert client.get("/admin/")["Location"].startswith(VERIFY)


def test_verify_sends_staff_without_a_device_to_enrol_and_never_off_site(client, admin_user):
    client.force_login(admin_user)
    assert client.get(VERIFY)["Location"].startswith(ENROL)
    device = confirmed_device_for(admin_user)
    response = client.post(VERIFY, {"code": code(device), "next": "https://evil.example/"})
    assert response["Location"] == reverse("cases:dashboard")


def test_logout_and_the_login_page_stay_reachable_before_the_second_factor(client, admin_user):
    log_in(client, "admin")
    assert client.get(reverse("login")).status_code == 200
    assert client.post(reverse("logout")).status_code == 302
    assert "_auth_user_id" not in client.session


def test_api_with_an_unverified_staff_session_is_refused_as_json(client, admin_user):
    client.force_login(admin_user)
    response = client.get("/api/v1/patients/")
    assert response.status_code == 403
    assert set(response.json()) == {"detail", "errors"} and response.json()["errors"] == {}


# --- API tokens -----------------------------------------------------------------------------------


def token(username: str, **extra: str):
    return APIClient().post(
        reverse("api:token"), {"username": username, "password": PASSWORD, **extra}, format="json"
    )


def test_staff_get_no_api_token_with_a_password_alone(admin_user):
    confirmed_device_for(admin_user)
    response = token("admin")
    assert response.status_code == 400
    assert response.json()["errors"]["otp"] == [services.CODE_MISSING]


def test_staff_without_a_device_are_told_to_enrol_in_the_portal(admin_user):
    response = token("admin", otp="123456")
    assert response.status_code == 400 and response.json()["errors"]["otp"] == [services.NOT_ENROLLED]


def test_staff_get_an_api_token_with_a_valid_code(admin_user):
    device = confirmed_device_for(admin_user)
    response = token("admin", otp=code(device))
    assert response.status_code == 200 and response.json()["token"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    assert client.get("/api/v1/patients/").status_code == 200


def test_a_wrong_code_for_a_token_is_refused_and_recorded(admin_user):
    device = confirmed_device_for(admin_user)
    wrong = f"{(int(code(device)) + 500_000) % 1_000_000:06d}"
    response = token("admin", otp=wrong)
    assert response.status_code == 400 and response.json()["errors"]["otp"] == [services.CODE_WRONG]
    failure = AuditEntry.objects.get(action=AuditEntry.Action.LOGIN_FAILED)
    assert failure.user_id == admin_user.pk and failure.detail == "wrong second-factor code"


# --- who is not affected --------------------------------------------------------------------------


def test_clinicians_are_unaffected(client, alice):
    log_in(client, "alice")
    assert client.get("/").status_code == 200
    assert client.get("/api/v1/patients/").status_code == 200
    assert token("alice").status_code == 200
    assert "Two-factor" not in client.get("/").content.decode()
    assert client.get(ENROL).status_code == 200 and not TOTPDevice.objects.exists()


def test_nothing_changes_when_the_setting_is_off(client, admin_user, settings):
    settings.STAFF_OTP_REQUIRED = False
    log_in(client, "admin")
    assert client.get("/admin/").status_code == 200
    assert client.get("/").status_code == 200
    assert client.get("/api/v1/patients/").status_code == 200
    confirmed_device_for(admin_user)
    assert token("admin").status_code == 200


@pytest.mark.parametrize(
    "env,expected",
    [({}, "False"), ({"DJANGO_ENV": "production"}, "True"), ({"STAFF_OTP_REQUIRED": "true"}, "True")],
)
def test_a_second_factor_is_required_by_default_in_production_only(tmp_path, env, expected):
    production = {
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "portal.example.org",
    }
    result = manage(
        "shell",
        "-c",
        "from django.conf import settings; print(settings.STAFF_OTP_REQUIRED)",
        LUNGPORTAL_DATA_DIR=str(tmp_path),
        **(production if env.get("DJANGO_ENV") else {}),
        **env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == expected


def test_a_key_seen_in_another_session_is_never_the_one_confirmed(client, admin_user, settings):
    """Someone with the password who opened the enrolment page once must not hold the final key."""
    from django.test import Client

    settings.STAFF_OTP_REQUIRED = True
    intruder = Client()
    intruder.force_login(admin_user)
    intruder.get(reverse("twofactor:enrol"))
    seen_key = TOTPDevice.objects.get(user=admin_user).bin_key

    client.force_login(admin_user)
    client.get(reverse("twofactor:enrol"))
    device = TOTPDevice.objects.get(user=admin_user)
    assert device.bin_key != seen_key
    response = client.post(reverse("twofactor:enrol"), {"code": f"{totp(device.bin_key):06d}"})
    assert response.status_code == 302
    assert list(TOTPDevice.objects.filter(user=admin_user).values_list("confirmed", flat=True)) == [True]
    assert TOTPDevice.objects.get(user=admin_user).bin_key != seen_key


# --- a second factor gives the session a new key --------------------------------------------------


def _session_id(client) -> str:
    from django.conf import settings

    return client.cookies[settings.SESSION_COOKIE_NAME].value


def _replayed(session_id: str):
    """Another browser holding a copy of a session cookie (sniffed, or left on a shared computer)."""
    from django.conf import settings
    from django.test import Client

    thief = Client()
    thief.cookies[settings.SESSION_COOKIE_NAME] = session_id
    return thief


def _assert_session_id_dead(session_id: str) -> None:
    from django.contrib.sessions.models import Session

    response = _replayed(session_id).get("/admin/")
    assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))
    assert not Session.objects.filter(session_key=session_id).exists()


def test_the_password_only_session_id_stops_working_once_staff_verify(client, admin_user):
    device = confirmed_device_for(admin_user)
    log_in(client, "admin")
    password_only = _session_id(client)
    assert _replayed(password_only).get("/admin/")["Location"].startswith(VERIFY)  # the attack's start

    response = client.post(VERIFY, {"code": code(device), "next": "/admin/"})

    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert _session_id(client) != password_only
    assert client.get("/admin/").status_code == 200  # the person who gave the code goes on
    _assert_session_id_dead(password_only)


def test_the_password_only_session_id_stops_working_once_staff_enrol(client, admin_user):
    log_in(client, "admin")
    client.get(ENROL)
    password_only = _session_id(client)
    device = TOTPDevice.objects.get(user=admin_user)

    response = client.post(ENROL, {"code": code(device), "next": "/admin/"})

    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert _session_id(client) != password_only
    assert client.get("/admin/").status_code == 200
    _assert_session_id_dead(password_only)
