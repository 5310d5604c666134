"""Who must give a second factor, enrolling a device, and checking codes.

Codes are checked against the user's one device, inside a transaction that locks its row:
django-otp's throttling (a growing wait after each wrong code) and its refusal of a code already
used both live on that row, and matching across devices would sidestep them.
"""

from __future__ import annotations

from base64 import b32encode

import django_otp
import segno
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.contrib.sessions.backends.base import SessionBase
from django.db import transaction
from django.http import HttpRequest
from django.middleware.csrf import rotate_token
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit import trail

CODE_DIGITS = 6
DEVICE_NAME = "Authenticator app"

NOT_ENROLLED = (
    "Staff accounts need a second factor: log in to the portal in a browser, enrol an authenticator "
    "app under Two-factor authentication, then ask for a token with its code in `otp`."
)
CODE_MISSING = f"Staff accounts need the {CODE_DIGITS}-digit code from their authenticator app in `otp`."
CODE_WRONG = "That code is not right, or was already used. Check the app's clock and try the next code."
THROTTLED = "Too many wrong codes: wait a few seconds before the next try."


class CodeRefused(Exception):
    """A code was not accepted; the message says why, in words for the person."""


def required_for(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Staff see every team: when the setting is on, a password alone is not enough for them."""
    return bool(settings.STAFF_OTP_REQUIRED and user.is_authenticated and getattr(user, "is_staff", False))


def session_verified(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Whether this session gave a code (django-otp's middleware sets `otp_device` from the session)."""
    return getattr(user, "otp_device", None) is not None


def confirmed_device(user: AbstractBaseUser) -> TOTPDevice | None:
    return TOTPDevice.objects.devices_for_user(user, confirmed=True).order_by("pk").first()


ENROLMENT_SESSION_KEY = "twofactor_enrolment_device"


def enrolment_device(user: User, session: SessionBase) -> TOTPDevice:
    """This session's unconfirmed device: a reload shows the same QR code, but a key seen in any
    other session (say, one with a phished password) is discarded, never confirmed later."""
    pending = TOTPDevice.objects.devices_for_user(user, confirmed=False)
    device = pending.filter(pk=session.get(ENROLMENT_SESSION_KEY)).first()
    if device is None:
        pending.delete()
        device = TOTPDevice.objects.create(user=user, name=DEVICE_NAME, confirmed=False)
        session[ENROLMENT_SESSION_KEY] = device.pk
    return device


def secret_text(device: TOTPDevice) -> str:
    """The key as authenticator apps take it typed in: base32, in groups of four."""
    secret = b32encode(device.bin_key).decode().rstrip("=")
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def qr_svg(device: TOTPDevice) -> str:
    """The device's otpauth:// URL as an SVG QR code: markup only, no style or script (CSP)."""
    code = segno.make(device.config_url, error="m")
    return code.svg_inline(scale=4, light="#fff", title="QR code for your authenticator app")


def device_confirm(*, request: HttpRequest, device: TOTPDevice, code: str) -> None:
    """A first correct code confirms the device and verifies this session."""
    _check(device, code)
    with transaction.atomic():
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        TOTPDevice.objects.devices_for_user(device.user, confirmed=False).delete()
        request.session.pop(ENROLMENT_SESSION_KEY, None)
        trail.record(
            trail.Action.CREATE,
            object_type="user",
            object_id=device.user_id,
            detail="second factor enrolled",
            request=request,
        )
    _session_verified(request, device)


def session_verify(*, request: HttpRequest, device: TOTPDevice, code: str) -> None:
    """A correct code verifies this session; a wrong one is recorded and refused."""
    _check_recorded(device, code, request=request)
    trail.record(
        trail.Action.LOGIN,
        object_type="user",
        object_id=device.user_id,
        detail="second factor",
        request=request,
    )
    _session_verified(request, device)


def _session_verified(request: HttpRequest, device: TOTPDevice) -> None:
    """Mark the session as having given a code, under a new key: the key it had with a password
    alone (sniffed, or left in another browser) must not inherit the second factor. A new CSRF
    token too, as Django's own login gives one."""
    request.session.cycle_key()
    rotate_token(request)
    django_otp.login(request, device)


def token_check(*, user: AbstractBaseUser, code: str) -> None:
    """Before an API token is issued: staff must add a code from their confirmed device."""
    if not required_for(user):
        return
    device = confirmed_device(user)
    if device is None:
        raise CodeRefused(NOT_ENROLLED)
    if not code:
        raise CodeRefused(CODE_MISSING)
    _check_recorded(device, code, user=user)


def _check_recorded(
    device: TOTPDevice, code: str, *, request: HttpRequest | None = None, user: AbstractBaseUser | None = None
) -> None:
    try:
        _check(device, code)
    except CodeRefused as refused:
        throttled = str(refused) == THROTTLED
        trail.record(
            trail.Action.LOGIN_FAILED,
            object_type="user",
            object_id=device.user_id,
            outcome=trail.Outcome.FAILED,
            detail="second-factor code while waiting after wrong ones"
            if throttled
            else "wrong second-factor code",
            request=request,
            user=user,
        )
        raise


def _check(device: TOTPDevice, code: str) -> None:
    # Raise only after the transaction: rolling it back would undo the failure count.
    with transaction.atomic():
        locked = TOTPDevice.objects.select_for_update().get(pk=device.pk)
        allowed, _ = locked.verify_is_allowed()
        verified = allowed and locked.verify_token(code)  # a wrong code counts towards the next wait
    if not allowed:
        raise CodeRefused(THROTTLED)
    if not verified:
        raise CodeRefused(CODE_WRONG)
    device.refresh_from_db()
