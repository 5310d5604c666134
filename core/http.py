"""The one error body every answer uses (pages' JSON, API, middleware), and the one test for
"answer as the API". App-agnostic, so that any app can answer alike."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from django.http import HttpRequest, JsonResponse

API_PATH_PREFIX = ("/api/", "/dicomweb/", "/fhir/")  # token-authenticated integrations: JSON answers


def is_api_request(request: HttpRequest) -> bool:
    return request.path.startswith(API_PATH_PREFIX)


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
