"""The secret key: refused in production when weak; in development, generated once per data
directory (never one key shared by every checkout)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

MIN_LENGTH = 50
MIN_UNIQUE_CHARACTERS = 5
KNOWN_WEAK = ("changeme", "change-me", "django-insecure", "development-only", "your-secret-key")
GENERATE_HINT = "python -c 'import secrets; print(secrets.token_urlsafe(50))'"


def weakness(key: str) -> str | None:
    """Why a key is too weak for production (Django's W009 rule, and placeholders), or None."""
    if len(key) < MIN_LENGTH:
        return f"it has {len(key)} characters; use at least {MIN_LENGTH}"
    if len(set(key)) < MIN_UNIQUE_CHARACTERS:
        return "it repeats too few characters"
    if any(word in key.lower() for word in KNOWN_WEAK):
        return "it contains a placeholder word"
    return None


def development_key(data_dir: Path) -> str:
    """A random key kept in the data directory, readable by its owner only."""
    path = data_dir / "secret_key"
    if not path.exists():
        try:  # O_EXCL: two processes starting at once agree on the first key written
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(50))
    return path.read_text().strip()
