"""The Celery app. Workers: `celery -A lungportal worker -Q inference,default` (add `-B` for the
periodic sweeps) and a light one for the integrations, `celery -A lungportal worker -Q integrations`
(outbox relay, webhooks, PACS export; `bin/run` starts both). Tasks are declared with
`core.tasks.house_task`; the `health` app adds its own heartbeat step to workers."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lungportal.settings")

app = Celery("lungportal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

import lungportal.request_log  # noqa: E402, F401  (request ids into and out of tasks)
