"""Thin Celery tasks: take primary keys, call services."""

from typing import Any

from core.tasks import house_task

from . import services


@house_task()  # on the default queue ("default")
def delivery_send(self: Any, delivery_id: int) -> None:
    try:
        services.delivery_send(delivery_id)
    except services.DeliveryRetry as exc:
        # The count lives in the database; the sweep sends it should this message be lost.
        raise self.retry(exc=exc, countdown=exc.countdown) from exc


@house_task()
def deliveries_sweep(self: Any) -> int:
    return services.deliveries_sweep()
