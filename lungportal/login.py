"""The login page, with the API's per-address limit on attempts (`API_THROTTLE_LOGIN`).

django-axes locks out a username tried from one address; this limits how many logins one
address may try at all, across usernames, so that the page is no easier to guess through than
the API's token endpoint.
"""

from __future__ import annotations

import math
import time
from typing import Any

from django.contrib.auth import views as auth_views
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from rest_framework.settings import api_settings

from core.net import client_ip

RATE_SCOPE = "login"
PERIODS = {"s": 1, "m": 60, "h": 60 * 60, "d": 60 * 60 * 24}


def login_attempt_wait(request: HttpRequest) -> int:
    """Count a login attempt from this request's address; the seconds it must wait, or 0 if allowed.

    A sliding window like DRF's throttles: the times of the address's recent attempts, kept in the
    shared cache so that every web process counts together."""
    number, seconds = _rate()
    key = f"login_page_{client_ip(request)}"
    now = time.time()
    recent = [at for at in cache.get(key, []) if at > now - seconds]
    if len(recent) >= number:
        return max(1, math.ceil(seconds - (now - min(recent))))
    cache.set(key, [*recent, now], seconds)
    return 0


class LoginView(auth_views.LoginView):
    """Django's login page; past the per-address limit a POST answers 429 with Retry-After."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        wait = login_attempt_wait(request)
        if wait:
            return throttled_response(request, wait)
        return super().post(request, *args, **kwargs)


def throttled_response(request: HttpRequest, wait: int) -> HttpResponse:
    response = render(request, "registration/login_throttled.html", {"wait": wait}, status=429)
    response["Retry-After"] = str(wait)
    return response


def _rate() -> tuple[int, int]:
    number, _, period = str(api_settings.DEFAULT_THROTTLE_RATES[RATE_SCOPE]).partition("/")
    return int(number), PERIODS[period[0]]
