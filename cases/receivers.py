"""A changed password or a change of `is_active` ends the user's API tokens and sessions, and a
password set anywhere must pass the password validators.

These hang on User's save signals because passwords are set and users disabled in places that
are not ours: Django's password change page, admin's user and password forms, a shell or a
command calling `set_password` and `save`. Only the model's save sees all of them.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import get_hasher, identify_hasher
from django.contrib.auth.password_validation import validate_password
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

from . import services

_REVOKE_REASON = "_credentials_revoke_reason"
# Promotion to staff too: a token issued to a clinician must not become an admin's token that
# never gave a second factor.
WATCHED_FIELDS = frozenset({"password", "is_active", "is_staff", "is_superuser"})


@receiver(pre_save, sender=get_user_model(), dispatch_uid="cases_user_credentials_check")
def _before_user_save(
    sender: Any, instance: Any, update_fields: frozenset[str] | None = None, **kwargs: Any
) -> None:
    # `set_password` keeps the raw password on the instance until the save: checking it here also
    # catches shells and commands that never call validate_password. (A user created with
    # `create_user(password=...)` arrives already hashed: nothing to check, nothing to revoke.)
    raw = getattr(instance, "_password", None)
    if raw is not None:
        validate_password(raw, instance)
    if instance.pk is None or (update_fields is not None and not update_fields & WATCHED_FIELDS):
        return  # a new user has nothing to revoke; a last_login update changes no credential
    before = sender.objects.filter(pk=instance.pk).values(*WATCHED_FIELDS).first()
    if before is None:
        return
    reason = _change_reason(instance, before, raw, update_fields)
    if reason:
        setattr(instance, _REVOKE_REASON, reason)


@receiver(post_save, sender=get_user_model(), dispatch_uid="cases_user_credentials_revoke")
def _after_user_save(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    reason = instance.__dict__.pop(_REVOKE_REASON, None)
    if reason:
        services.credentials_revoke(user=instance, reason=reason)


def _change_reason(
    instance: Any, before: dict[str, Any], raw: str | None, update_fields: frozenset[str] | None
) -> str:
    reasons = []
    # Enabling a user again revokes too: one disabled by a bulk `update()` (no signal) or before
    # this hook existed may still hold tokens and sessions, and this is the last moment to end them.
    if before["is_active"] != instance.is_active:
        reasons.append("user disabled" if not instance.is_active else "user enabled again")
    if (before["is_staff"], before["is_superuser"]) != (instance.is_staff, instance.is_superuser):
        reasons.append("staff or superuser status changed")
    # Django re-hashes the same password on login when its hasher settings move on
    # (`check_password`'s setter: no raw password, only the password field saved). It does so only
    # to a hash that needed it: a hash set directly (`user.password = make_password(...)`) over an
    # up-to-date one, however it is saved, is a new password.
    rehash = (
        raw is None
        and update_fields == frozenset({"password"})
        and _outdated(before["password"])
        and not _outdated(instance.password)
    )
    if before["password"] != instance.password and not rehash:
        reasons.append("password changed")
    return ", ".join(reasons)


def _outdated(encoded: str) -> bool:
    """Whether Django would re-hash this stored hash at the next correct login."""
    try:
        hasher = identify_hasher(encoded)
    except ValueError:  # unusable ("!…") or unknown: never re-hashed
        return False
    preferred = get_hasher()
    return hasher.algorithm != preferred.algorithm or preferred.must_update(encoded)
