"""Requests Django refuses before any view runs (too many files, too large a body, unreadable
multipart): a message a person can act on, as JSON for scripts and the upload page."""

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import bad_request as django_bad_request

from cases.services import REQUEST_LIMIT_ERRORS, request_limit_message


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if isinstance(exception, REQUEST_LIMIT_ERRORS):
        message = request_limit_message()
    else:
        message = "The request could not be read; nothing was stored. Please try again."
    if request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", ""):
        return JsonResponse({"detail": message, "errors": {"files": [message]}}, status=400)
    return django_bad_request(request, exception)
