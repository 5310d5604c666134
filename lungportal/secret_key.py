"""The secret key: refused in production when weak; in development, generated once per data
directory (never one key shared by every checkout)."""

from __future__ import annotations

import os
import secrets
import tempfile
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
        # Written whole under a private name, then linked into place: two processes starting at
        # once (web and worker) both read the first complete key, never a half-written file.
        fd, draft = tempfile.mkstemp(dir=data_dir, prefix=".secret_key.")
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(50))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(draft)
    return path.read_text().strip()
