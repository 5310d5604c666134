"""How the portal answers over HTTP, shared by pages, API and the project's error handlers:
one error body, one test for "is this an API request", and the wording for requests that
Django refuses before any view runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest, JsonResponse

API_PATH_PREFIX = "/api/"

# Django refuses a request over its own limits before our checks run; say why in our words.
REQUEST_LIMIT_ERRORS = (RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent)


def is_api_request(request: HttpRequest) -> bool:
    return request.path.startswith(API_PATH_PREFIX)


def wants_json(request: HttpRequest) -> bool:
    """An API call, or a page's script asking for JSON (the upload form)."""
    return is_api_request(request) or "application/json" in request.headers.get("Accept", "")


def error_body(detail: str, errors: Mapping[str, Sequence[str]] | None = None) -> dict[str, object]:
    """The one shape of every error answer: {"detail": "...", "errors": {"field": ["..."]}}."""
    return {
        "detail": detail,
        "errors": {field: [str(m) for m in messages] for field, messages in (errors or {}).items()},
    }


def error_response(
    detail: str, errors: Mapping[str, Sequence[str]] | None = None, *, status: int = 400
) -> JsonResponse:
    return JsonResponse(error_body(detail, errors), status=status)


def request_limit_message() -> str:
    return (
        f"The upload is too large: at most {settings.UPLOAD_MAX_FILES} files of at most "
        f"{settings.UPLOAD_MAX_FILE_BYTES // (1024 * 1024)} MB each per scan. Nothing was stored."
    )
