"""Thin Celery tasks: take primary keys, call services."""

from typing import Any

from core.tasks import house_task

from . import services

BACKOFF_FIRST = 30  # seconds before the second attempt; doubled each time
BACKOFF_MAX = 3600  # never more than an hour apart: ten attempts span about three hours


def result_export_backoff(attempts: int) -> int:
    """Seconds to wait after `attempts` failed deliveries."""
    return min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** max(0, attempts - 1))


@house_task()
def result_exports_sweep(self: Any) -> int:
    return services.result_exports_sweep()


@house_task()  # on the default queue ("default")
def result_export_deliver(self: Any, export_id: int) -> None:
    try:
        services.result_export_deliver(export_id)
    except services.DeliveryRetry as exc:
        # The count lives in the database (a redelivered message starts Celery's count afresh).
        raise self.retry(exc=exc, countdown=result_export_backoff(exc.attempts)) from exc
