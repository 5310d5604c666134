"""Where the test suite truly differs: its own data directory (so a running `make run` never
sees test messages or files), a fast password hasher, and a way to hand the test database's
name to the Celery worker processes that the tests start."""

import os
from pathlib import Path

os.environ.setdefault("LUNGPORTAL_DATA_DIR", str(Path(__file__).resolve().parent.parent / "var" / "test"))

from .settings import *  # noqa: E402,F403
from .settings import DATABASES  # noqa: E402

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

if os.environ.get("LUNGPORTAL_TEST_DB_NAME"):
    DATABASES["default"]["NAME"] = os.environ["LUNGPORTAL_TEST_DB_NAME"]
