"""The Celery app and the house task decorator.

Workers: `celery -A lungportal worker -Q inference,default` (add `-B` for the periodic sweep).
"""

import os
from collections.abc import Callable
from typing import Any

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lungportal.settings")

app = Celery("lungportal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

from health.worker import HeartbeatStep  # noqa: E402  (needs the app above)

app.steps["worker"].add(HeartbeatStep)


def house_task(**options: Any) -> Callable[..., Any]:
    """The one way to declare a task: late acks, requeue when the worker dies, time limits.
    Queues are chosen in settings.CELERY_TASK_ROUTES.

    Attempts are counted in the database by the services, not by Celery, so a task that keeps
    killing its worker still ends `failed`.
    """
    from django.conf import settings

    defaults: dict[str, Any] = {
        "bind": True,
        "acks_late": True,
        "reject_on_worker_lost": True,
        "time_limit": settings.CELERY_TASK_TIME_LIMIT,
        "soft_time_limit": settings.CELERY_TASK_SOFT_TIME_LIMIT,
        "max_retries": None,
    }
    return app.task(**{**defaults, **options})
