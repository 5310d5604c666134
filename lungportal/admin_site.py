"""Django admin with the login page's per-address limit on attempts (one counter for both):
installed through `lungportal.admin_apps.PortalAdminConfig` in place of `django.contrib.admin`."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse

from .login import login_attempt_wait, throttled_response


class PortalAdminSite(admin.AdminSite):
    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if request.method == "POST" and (wait := login_attempt_wait(request)):
            return throttled_response(request, wait)
        return super().login(request, extra_context)
