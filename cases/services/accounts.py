"""Clinicians and their care teams, and the credentials they hold (API tokens, sessions)."""

from __future__ import annotations

from django.contrib.auth import SESSION_KEY, get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import User
from django.contrib.auth.password_validation import validate_password
from django.contrib.sessions.models import Session
from django.db import transaction
from django.utils import timezone
from knox.models import AuthToken
from knox.settings import knox_settings

from audit import trail

from ..models import CareTeam


def user_create(*, username: str, password: str, team_name: str, is_admin: bool = False) -> User:
    """Create a clinician (or an admin) in a care team, creating the team when new."""
    user: User = get_user_model()(username=username, is_staff=is_admin, is_superuser=is_admin)
    validate_password(password, user)
    user.full_clean(exclude=["password"])
    with transaction.atomic():
        user.set_password(password)
        user.save()
        team, _ = CareTeam.objects.get_or_create(name=team_name)
        team.members.add(user)
        trail.record_object(
            trail.Action.CREATE,
            user,
            changes={"username": [None, username], "team": [None, team_name], "is_staff": [None, is_admin]},
        )
    return user


def token_issue(*, user: AbstractBaseUser) -> tuple[AuthToken, str]:
    """A new API token for `user` (the instance and the secret, shown once).

    At most `API_TOKENS_PER_USER` tokens live at once: when a login would pass the limit, the
    oldest live tokens are revoked, so the new login always succeeds and an integration that
    never logs out cannot lock its own account out of the API."""
    limit: int = knox_settings.TOKEN_LIMIT_PER_USER
    with transaction.atomic():
        # Concurrent logins of one user queue here, so neither can count before the other's insert.
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()
        tokens = AuthToken.objects.filter(user=user)
        tokens.filter(expiry__lte=timezone.now()).delete()
        surplus = tokens.count() - (limit - 1)
        if surplus > 0:
            oldest = list(tokens.order_by("created").values_list("digest", flat=True)[:surplus])
            AuthToken.objects.filter(digest__in=oldest).delete()
            trail.record(
                trail.Action.TOKEN_REVOKE,
                object_type="user",
                object_id=user.pk,
                user=user,
                detail=f"{surplus} oldest API token(s): a new login passed the limit of {limit} per user",
            )
        instance, token = AuthToken.objects.create(user)
    return instance, token


def credentials_revoke(*, user: AbstractBaseUser, reason: str) -> tuple[int, int]:
    """Delete every API token and every session of `user`; returns (tokens, sessions) deleted.

    Deleted, not merely refused: a refused credential comes back when the refusal ends (a
    disabled user who is enabled again would find their old tokens and sessions working).
    Sessions are found by reading the database session store (the portal's `SESSION_ENGINE`).
    The session that changed its own password is deleted too; Django's password change views
    then save it again under a new key (`update_session_auth_hash`), so its user stays logged in.
    """
    with transaction.atomic():
        tokens, _ = AuthToken.objects.filter(user=user).delete()
        owner = str(user.pk)
        keys = [
            session.session_key
            for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator()
            if session.get_decoded().get(SESSION_KEY) == owner
        ]
        sessions, _ = Session.objects.filter(session_key__in=keys).delete()
        if tokens or sessions:
            trail.record(
                trail.Action.TOKEN_REVOKE,
                object_type="user",
                object_id=user.pk,
                detail=f"{tokens} API token(s) and {sessions} session(s) ended: {reason}",
            )
    return tokens, sessions
