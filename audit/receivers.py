"""Logins, logouts, failed logins and lockouts, heard from Django's and axes' signals."""

from typing import Any

from axes.signals import user_locked_out
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from . import trail


@receiver(user_logged_in, dispatch_uid="audit_login")
def _logged_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    trail.record(trail.Action.LOGIN, object_type="user", object_id=user.pk, user=user, request=request)


@receiver(user_logged_out, dispatch_uid="audit_logout")
def _logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is None:
        return
    if trail.channel_of(request) == trail.Channel.API:  # knox: an API token was revoked
        match = request.resolver_match
        every = match is not None and match.url_name == "logout-all"
        action, detail = trail.Action.TOKEN_REVOKE, "every API token" if every else "this API token"
    else:
        action, detail = trail.Action.LOGOUT, ""
    trail.record(action, object_type="user", object_id=user.pk, user=user, request=request, detail=detail)


@receiver(user_login_failed, dispatch_uid="audit_login_failed")
def _login_failed(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    trail.record(
        trail.Action.LOGIN_FAILED,
        object_type="user",
        outcome=trail.Outcome.FAILED,
        username=str(credentials.get("username", "")),
        request=request,
    )


@receiver(user_locked_out, dispatch_uid="audit_lockout")
def _locked_out(sender: Any, request: Any, username: str | None = None, **kwargs: Any) -> None:
    trail.record(
        trail.Action.LOCKOUT,
        object_type="user",
        outcome=trail.Outcome.REFUSED,
        username=username or "",
        request=request,
    )
