"""Enrolment and verification pages. Thin: validate the code, call one service, render."""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render, resolve_url
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_http_methods

from . import services
from .forms import CodeForm


def _user(request: HttpRequest) -> User:
    if not isinstance(request.user, User):  # unreachable behind login_required
        raise PermissionDenied("Log in first.")
    return request.user


def _next(request: HttpRequest) -> str:
    """Where the person was going, if it is on this site; else the dashboard."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(target, {request.get_host()}, require_https=request.is_secure()):
        return target
    return resolve_url(settings.LOGIN_REDIRECT_URL)


def _to(view_name: str, request: HttpRequest) -> HttpResponse:
    return redirect(f"{reverse(view_name)}?{urlencode({'next': _next(request)})}")


@login_required
@require_http_methods(["GET", "POST"])
def enrol(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    if not user.is_staff:
        return render(request, "twofactor/not_needed.html")
    if services.confirmed_device(user) is not None:
        if not services.session_verified(user):
            return _to("twofactor:verify", request)
        return render(request, "twofactor/enrolled.html")
    device = services.enrolment_device(user, request.session)
    form = CodeForm(request.POST or None)
    if form.is_valid():
        try:
            services.device_confirm(request=request, device=device, code=form.cleaned_data["code"])
        except services.CodeRefused as refused:
            form.add_error("code", str(refused))
        else:
            messages.success(request, "Two-factor authentication is on for your account.")
            return redirect(_next(request))
    context = {
        "form": form,
        "next": _next(request),
        # segno's own SVG of our otpauth:// URL: path data and a title it escapes, nothing from input.
        "qr_svg": mark_safe(services.qr_svg(device)),
        "secret": services.secret_text(device),
    }
    return render(request, "twofactor/enrol.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def verify(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    if not user.is_staff or services.session_verified(user):
        return redirect(_next(request))
    device = services.confirmed_device(user)
    if device is None:
        return _to("twofactor:enrol", request)
    form = CodeForm(request.POST or None)
    if form.is_valid():
        try:
            services.session_verify(request=request, device=device, code=form.cleaned_data["code"])
        except services.CodeRefused as refused:
            form.add_error("code", str(refused))
        else:
            return redirect(_next(request))
    return render(request, "twofactor/verify.html", {"form": form, "next": _next(request)})
