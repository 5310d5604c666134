"""The checks behind /healthz: each returns (ok, detail)."""

from __future__ import annotations

from datetime import timedelta

from celery import current_app as app
from django.conf import settings
from django.db import connection
from django.utils import timezone

from .models import WorkerHeartbeat

Check = tuple[bool, str]


def database() -> Check:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True, connection.vendor
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"


def broker() -> Check:
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            return True, conn.as_uri()
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"


def workers() -> Check:
    since = timezone.now() - timedelta(seconds=3 * settings.WORKER_HEARTBEAT_SECONDS)
    try:
        alive = list(WorkerHeartbeat.objects.filter(last_seen__gte=since).values_list("hostname", flat=True))
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"
    return (
        (True, ", ".join(alive))
        if alive
        else (False, f"no worker has reported in the last {3 * settings.WORKER_HEARTBEAT_SECONDS} s")
    )


def model_version() -> Check:
    """The active model version, with its weights present and unchanged (SHA-256)."""
    from inference.services import model_version_active, model_version_verify

    try:
        version = model_version_active()
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"
    problem = model_version_verify(version)
    if problem is not None:
        return False, f"{version.name}: {problem}"
    return True, version.name
