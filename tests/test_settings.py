"""Production settings pass Django's deployment checks; malformed settings fail loudly."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


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
        DJANGO_SECRET_KEY="x" * 20 + "a-long-random-production-secret-key-0123456789",
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
