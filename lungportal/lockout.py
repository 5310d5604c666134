"""What a locked-out login gets (django-axes): the lockout page, or the API's error body."""

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from core.http import error_response, is_api_request

MESSAGE = "Too many failed logins for this username from here; try again later or ask an administrator."


def lockout_response(
    request: HttpRequest, original_response: Any = None, credentials: Any = None
) -> HttpResponse:
    retry_after = str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
    if is_api_request(request):
        response: HttpResponse = error_response(MESSAGE, status=429)
    else:
        response = render(request, "registration/locked_out.html", {"message": MESSAGE}, status=429)
    response["Retry-After"] = retry_after
    return response
