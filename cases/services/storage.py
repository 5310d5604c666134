"""Private media files written by the services: generated names, and clean-up on failure."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone


def file_save(folder: str, extension: str, content: bytes) -> str:
    """Store bytes under a generated name (never the client's) and return that name."""
    now = timezone.now()
    return default_storage.save(f"{folder}/{now:%Y/%m}/{uuid.uuid4().hex}.{extension}", ContentFile(content))


def files_delete(names: Iterable[str]) -> None:
    for name in names:
        default_storage.delete(name)
