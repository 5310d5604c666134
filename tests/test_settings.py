"""Production settings pass Django's deployment checks; malformed settings fail loudly."""

import base64
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management.utils import get_random_secret_key

from lungportal import secret_key

ROOT = Path(__file__).resolve().parent.parent


def ci_key() -> str:
    """The key `.ci/run` checks the deploy with: `ci-$(head -c 48 /dev/urandom | base64 | tr -d '/+=')`."""
    return "ci-" + base64.b64encode(os.urandom(48)).decode().translate(str.maketrans("", "", "/+="))


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "LUNGPORTAL_"))}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_settings_pass_the_deploy_check(tmp_path):
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_ENV="production",
        DJANGO_SECRET_KEY=ci_key(),
        DJANGO_ALLOWED_HOSTS="portal.example.org",
        LUNGPORTAL_DATA_DIR=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr + result.stdout


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    result = manage("check", DJANGO_ENV="production", LUNGPORTAL_DATA_DIR=str(tmp_path))
    assert result.returncode != 0 and "DJANGO_SECRET_KEY must be set" in result.stderr


@pytest.mark.parametrize(
    "name,value", [("UPLOAD_MAX_FILES", "many"), ("DJANGO_DEBUG", "perhaps"), ("DJANGO_ENV", "staging")]
)
def test_malformed_settings_fail_loudly(tmp_path, name, value):
    result = manage("check", LUNGPORTAL_DATA_DIR=str(tmp_path), **{name: value})
    assert result.returncode != 0 and name in result.stderr


def test_debug_is_off_by_default(settings):
    assert settings.DEBUG is False


@pytest.mark.parametrize(
    ("key", "debug"),
    [
        ("changeme", "false"),
        ("a" * 60, "false"),
        ("changeme-" + "x1y2z3" * 10, "false"),
        ("q7Zp2-" * 10, "true"),
    ],
)
def test_production_refuses_a_weak_key_or_debug(tmp_path, key, debug):
    result = manage(
        "check",
        DJANGO_ENV="production",
        DJANGO_SECRET_KEY=key,
        DJANGO_DEBUG=debug,
        DJANGO_ALLOWED_HOSTS="portal.example.org",
        LUNGPORTAL_DATA_DIR=str(tmp_path),
    )
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is too weak" in result.stderr or "DJANGO_DEBUG must be off" in result.stderr


def test_development_key_is_generated_once_per_data_directory(tmp_path):
    show = ["shell", "-c", "from django.conf import settings; print(settings.SECRET_KEY)"]
    first = manage(*show, LUNGPORTAL_DATA_DIR=str(tmp_path / "one")).stdout.strip()
    again = manage(*show, LUNGPORTAL_DATA_DIR=str(tmp_path / "one")).stdout.strip()
    other = manage(*show, LUNGPORTAL_DATA_DIR=str(tmp_path / "two")).stdout.strip()
    assert len(first) >= 50 and first == again and first != other
    assert (tmp_path / "one" / "secret_key").stat().st_mode & 0o777 == 0o600


# Each is 50+ characters with 5+ distinct ones (Django's own W009 rule), yet guessable or repeated.
LOW_ENTROPY_KEYS = [
    "0123456789" * 5,
    "secret" * 10,
    "x" * 20 + "a-long-random-production-secret-key-0123456789",
    "q7Zp2-" * 10,
    "abcdefghijklmnopqrstuvwxyz" * 2,
    "passwordpasswordpassword1234567890qwertyuiopasdfghjkl",
    "correct-horse-battery-staple-correct-horse-battery-staple",
    "Tr0ub4dor&3" * 5,
    "my-production-django-secret-key-for-the-lung-portal-2024",
    "LungPortal-Production-Secret-Key-2024-Hospital-Chest-Unit!",
    "Pu7snl5svf-cD-XNg6A1" * 4,  # a random start, repeated
]


@pytest.mark.parametrize("key", LOW_ENTROPY_KEYS)
def test_low_entropy_keys_are_weak_however_long(key):
    assert len(key) >= secret_key.MIN_LENGTH and len(set(key)) >= secret_key.MIN_UNIQUE_CHARACTERS
    assert secret_key.estimated_bits(key) < secret_key.MIN_ENTROPY_BITS
    assert "bits" in (secret_key.weakness(key) or "")


@pytest.mark.parametrize("key", ["0123456789" * 5, "secret" * 10])
def test_production_refuses_a_long_key_that_repeats_a_pattern(tmp_path, key):
    result = manage(
        "check",
        DJANGO_ENV="production",
        DJANGO_SECRET_KEY=key,
        DJANGO_ALLOWED_HOSTS="portal.example.org",
        LUNGPORTAL_DATA_DIR=str(tmp_path),
    )
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is too weak" in result.stderr and "bits" in result.stderr


@pytest.mark.parametrize(
    "make",
    [
        lambda: secrets.token_urlsafe(50),  # the README's and the error message's recipe
        get_random_secret_key,  # Django's startproject
        lambda: secrets.token_hex(32),  # openssl rand -hex 32
        ci_key,
    ],
    ids=["token_urlsafe", "django", "hex", "ci"],
)
def test_generated_keys_are_strong(make):
    for _ in range(10):
        key = make()
        assert secret_key.weakness(key) is None, (key, secret_key.estimated_bits(key))
