"""Structured logs: one JSON object a line, each carrying the id of the request it belongs to.

The id is the client's X-Request-ID where that is a plain token (a proxy or an integration sets
one), else one made here. It goes back in the response's X-Request-ID, travels with every Celery
task the request enqueues (a message header) and marks that task's log lines, so one upload can be
followed from the web server into the worker. Work no request started (the periodic sweeps) is
marked `task-<task id>`."""

from __future__ import annotations

import contextvars
import logging
import re
import uuid
from collections.abc import Callable
from typing import Any

from celery.signals import before_task_publish, task_postrun, task_prerun
from django.core.signals import request_finished
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse

HEADER = "X-Request-ID"
NONE = "-"
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default=NONE)
# What a log line may carry from outside: no spaces, quotes or control characters, bounded.
_PLAIN_TOKEN = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def request_id_for(supplied: str) -> str:
    return supplied if _PLAIN_TOKEN.fullmatch(supplied) else uuid.uuid4().hex


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_for(request.headers.get(HEADER, ""))
        # Kept until the request has finished: Django logs a 4xx/5xx after the middleware returns.
        REQUEST_ID.set(request_id)
        response = self.get_response(request)
        response[HEADER] = request_id
        return response


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every record the handler writes."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


@receiver(request_finished)
def _end_request_id(**_: Any) -> None:
    REQUEST_ID.set(NONE)


@before_task_publish.connect
def _carry_request_id(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is not None and REQUEST_ID.get() != NONE:
        headers.setdefault("request_id", REQUEST_ID.get())


@task_prerun.connect
def _adopt_request_id(task_id: str = "", task: Any = None, **_: Any) -> None:
    carried = getattr(getattr(task, "request", None), "request_id", None)
    REQUEST_ID.set(carried if isinstance(carried, str) and carried else f"task-{task_id}")


@task_postrun.connect
def _drop_request_id(**_: Any) -> None:
    REQUEST_ID.set(NONE)
