"""One error format for every 4xx answer: {"detail": "...", "errors": {"field": ["..."]}}."""

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import exception_handler

from core.http import error_body

from ..http import REQUEST_LIMIT_ERRORS, request_limit_message


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DjangoValidationError):  # raised by services (model validation)
        exc = exceptions.ValidationError(as_serializer_error(exc))
    elif isinstance(exc, REQUEST_LIMIT_ERRORS):
        exc = exceptions.ValidationError({"files": [request_limit_message()]})
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        errors = response.data if isinstance(response.data, dict) else {"non_field_errors": response.data}
        response.data = {"detail": "The request is invalid; see errors.", "errors": errors}
    else:
        detail = response.data.get("detail", "") if isinstance(response.data, dict) else str(response.data)
        response.data = error_body(str(detail))
    return response
