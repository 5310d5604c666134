"""How the portal answers requests it cannot take: "does this caller want JSON", and the wording
and status for uploads over the limits (the error body itself is `core.http`'s)."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import BadRequest, RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest, HttpResponse
from django.views.defaults import bad_request

from core.http import error_response, is_api_request

# Django refuses a request over its own limits before our checks run; say why in our words.
REQUEST_LIMIT_ERRORS = (RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent)


class UploadTooLarge(BadRequest):
    """A file of the request body passed the upload limit while the body was being read.

    Not a RequestDataTooBig: the API's handler answers those 400 itself, while this one reaches the
    project's 400 handler, which answers it 413 (`upload_too_large_response`)."""


def wants_json(request: HttpRequest) -> bool:
    """An API call, or a page's script asking for JSON (the upload form)."""
    return is_api_request(request) or "application/json" in request.headers.get("Accept", "")


def size_text(size: int) -> str:
    """Bytes in words: "20 MB", "1 GB", "0.2 MB", "5,000 bytes"."""
    if size >= 1024**3:
        return f"{round(size / 1024**3, 1):g} GB"
    if size >= 1024**2 // 10:
        return f"{round(size / 1024**2, 1):g} MB"
    return f"{size:,} bytes"


def request_limit_message() -> str:
    return (
        f"The upload is too large: at most {settings.UPLOAD_MAX_FILES} files of at most "
        f"{size_text(settings.UPLOAD_MAX_FILE_BYTES)} each per scan, "
        f"{size_text(settings.UPLOAD_MAX_REQUEST_BYTES)} in all. Nothing was stored."
    )


def upload_too_large_response(request: HttpRequest, problem: str = "") -> HttpResponse:
    """413, before or while the body is read: JSON for the API and the upload page's script, the
    bad-request page otherwise. `problem` names the file that passed the limit, where one did."""
    message = request_limit_message()
    if wants_json(request):
        return error_response(message, {"files": [problem or message]}, status=413)
    response = bad_request(request, UploadTooLarge(problem or message))
    response.status_code = 413
    return response
