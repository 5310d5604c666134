"""Requests Django refuses before any view runs (too many files, too large a body, unreadable
multipart): a message a person can act on, as JSON for scripts and the upload page."""

from django.http import HttpRequest, HttpResponse
from django.views.defaults import bad_request as django_bad_request

from cases.http import (
    REQUEST_LIMIT_ERRORS,
    UploadTooLarge,
    request_limit_message,
    upload_too_large_response,
    wants_json,
)
from core.http import error_response


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if isinstance(exception, UploadTooLarge):  # a file passed the limit while the body was read
        return upload_too_large_response(request, str(exception))
    if isinstance(exception, REQUEST_LIMIT_ERRORS):
        message = request_limit_message()
    else:
        message = "The request could not be read; nothing was stored. Please try again."
    if wants_json(request):
        return error_response(message, {"files": [message]})
    return django_bad_request(request, exception)
