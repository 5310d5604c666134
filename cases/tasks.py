"""Thin Celery tasks: take primary keys, call services."""

from typing import Any

from core.tasks import house_task

from . import services


@house_task()
def prediction_run(self: Any, prediction_id: int) -> None:
    try:
        services.prediction_execute(
            prediction_id=prediction_id, task_id=self.request.id or "", worker=self.request.hostname or ""
        )
    except services.PredictionRetry as exc:
        # Exponential backoff: 2, 4, 8 ... seconds, capped at a minute.
        raise self.retry(exc=exc, countdown=min(60, 2 ** (self.request.retries + 1))) from exc


@house_task()
def predictions_sweep(self: Any) -> int:
    return services.predictions_sweep()


@house_task()
def media_sweep(self: Any) -> int:
    """Report files no row references (in the audit trail); removing them is for an operator."""
    return len(services.media_sweep(remove=False).orphans)
