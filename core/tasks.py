"""The house task decorator: every Celery task in the portal is declared with it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import shared_task
from django.conf import settings


def house_task(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """Late acks, requeue when the worker dies, time limits; queues come from
    settings.CELERY_TASK_ROUTES.

    Attempts are counted in the database by the services, not by Celery, so a task that keeps
    killing its worker still ends `failed`.
    """
    defaults: dict[str, Any] = {
        "bind": True,
        "acks_late": True,
        "reject_on_worker_lost": True,
        "time_limit": settings.CELERY_TASK_TIME_LIMIT,
        "soft_time_limit": settings.CELERY_TASK_SOFT_TIME_LIMIT,
        "max_retries": None,
    }
    decorator: Callable[[Callable[..., Any]], Any] = shared_task(**{**defaults, **options})
    return decorator
