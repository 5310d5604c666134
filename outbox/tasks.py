"""Thin Celery tasks on the `integrations` queue (settings.CELERY_TASK_ROUTES). Events are
dispatched by the process that commits them; this sweep hands on what that missed."""

from typing import Any

from core.tasks import house_task

from . import services


@house_task()
def outbox_sweep(self: Any) -> int:
    return services.events_sweep()
