"""Private media files written by the services: generated names, and clean-up on failure."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from audit import trail

from ..models import Slice


def file_save(folder: str, extension: str, content: bytes) -> str:
    """Store bytes under a generated name (never the client's) and return that name."""
    now = timezone.now()
    return default_storage.save(f"{folder}/{now:%Y/%m}/{uuid.uuid4().hex}.{extension}", ContentFile(content))


def files_delete(names: Iterable[str]) -> None:
    for name in names:
        default_storage.delete(name)


def slice_intact(item: Slice, content: bytes, *, use: str, expected: str | None = None) -> bool:
    """Whether bytes read from a slice's file are those stored at upload (`expected`: the hash of
    another of its files, e.g. the Hounsfield one); a mismatch is recorded in the audit trail
    (`use`: what was refused, "served" or "classified")."""
    expected = expected or item.sha256
    found = hashlib.sha256(content).hexdigest()
    if found == expected:
        return True
    trail.record_object(
        trail.Action.INTEGRITY,
        item,
        outcome=trail.Outcome.FAILED,
        detail=f"Not {use}: stored file's SHA-256 {found[:12]}… differs from "
        f"{expected[:12]}… recorded at upload",
    )
    return False
