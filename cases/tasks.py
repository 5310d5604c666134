"""Thin Celery tasks: take primary keys, call services."""

from lungportal.celery import house_task

from . import services


@house_task()
def prediction_run(self, prediction_id: int) -> None:  # type: ignore[no-untyped-def]
    try:
        services.prediction_execute(prediction_id=prediction_id, task_id=self.request.id or "")
    except services.PredictionRetry as exc:
        # Exponential backoff: 2, 4, 8 ... seconds, capped at a minute.
        raise self.retry(exc=exc, countdown=min(60, 2 ** (self.request.retries + 1))) from exc


@house_task()
def predictions_sweep(self) -> int:  # type: ignore[no-untyped-def]
    return services.predictions_sweep()
