"""Sessions end a fixed time after their login, however busy they are.

`SESSION_COOKIE_AGE` with `SESSION_SAVE_EVERY_REQUEST` is an idle timeout: a session in steady
use (or a stolen cookie replayed every few minutes) would otherwise live for ever.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.signals import user_logged_in
from django.contrib.auth.views import redirect_to_login
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse

from core.http import error_response, is_api_request

LOGIN_AT = "lungportal_login_at"
ENDED = "Your session has ended; log in again."


@receiver(user_logged_in, dispatch_uid="lungportal_session_login_at")
def _stamp_login(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    # Django keeps a session's data when the same user logs in again, so the clock is restarted
    # here, at the login itself, rather than only when the middleware finds it missing.
    # (Connected when Django loads this middleware, before it serves any request.)
    session = getattr(request, "session", None)
    if session is not None:
        session[LOGIN_AT] = int(time.time())


class AbsoluteSessionLimitMiddleware:
    """Logs out a session `SESSION_ABSOLUTE_SECONDS` after its login: the page asks for a login
    again, the API (with session authentication) answers 401."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.user.is_authenticated:
            login_at = request.session.get(LOGIN_AT)
            now = int(time.time())
            if not isinstance(login_at, int):
                # A session from before this limit existed, or logged in before this module loaded.
                request.session[LOGIN_AT] = now
            elif now - login_at > settings.SESSION_ABSOLUTE_SECONDS:
                logout(request)
                if is_api_request(request):
                    return error_response(ENDED, status=401)
                return redirect_to_login(request.get_full_path())
        return self.get_response(request)
