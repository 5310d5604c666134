from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from core.http import error_response, is_api_request

from . import services

API_REFUSAL = (
    "Staff must give a second factor: verify this browser session at /accounts/2fa/verify/, "
    "or use an API token obtained with `otp`."
)
# Reachable before the second factor: the pages that ask for it, and the ways out.
OPEN_VIEWS = ("twofactor:enrol", "twofactor:verify", "login", "logout", "admin:logout")


class StaffSecondFactorMiddleware:
    """Holds a staff session that has given only a password at the enrol or verify page.

    Goes after django-otp's OTPMiddleware, which tells whether the session gave a code. API calls
    made with such a session get a 403. Calls with an API token have no session user here and
    pass: the token endpoint asked staff for a code before it issued the token.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        if services.required_for(user) and not services.session_verified(user) and not _open(request):
            if is_api_request(request):
                return error_response(API_REFUSAL, status=403)
            enrolled = isinstance(user, User) and services.confirmed_device(user) is not None
            target = reverse("twofactor:verify" if enrolled else "twofactor:enrol")
            return HttpResponseRedirect(f"{target}?{urlencode({'next': request.get_full_path()})}")
        return self.get_response(request)


def _open(request: HttpRequest) -> bool:
    return request.path.startswith(settings.STATIC_URL or "/static/") or request.path in {
        reverse(name) for name in OPEN_VIEWS
    }
