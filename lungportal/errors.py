"""Requests Django refuses before any view runs (too many files, too large a body, unreadable
multipart): a message a person can act on, as JSON for scripts and the upload page."""

from django.http import HttpRequest, HttpResponse
from django.views.defaults import bad_request as django_bad_request

from cases.http import REQUEST_LIMIT_ERRORS, error_response, request_limit_message, wants_json


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if isinstance(exception, REQUEST_LIMIT_ERRORS):
        message = request_limit_message()
    else:
        message = "The request could not be read; nothing was stored. Please try again."
    if wants_json(request):
        return error_response(message, {"files": [message]})
    return django_bad_request(request, exception)
