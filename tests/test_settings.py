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
