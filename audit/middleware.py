from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from . import trail


class AuditMiddleware:
    """Collects the reads of a request and writes them when it ends: one query per request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = trail.begin(request)
        try:
            return self.get_response(request)
        finally:
            trail.end(token)
