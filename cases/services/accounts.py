"""Clinicians and their care teams."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.contrib.auth.password_validation import validate_password
from django.db import transaction

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
