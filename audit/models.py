"""One row per thing someone did or tried: append-only, in the database and in Python.

In Python: an entry is only ever inserted (never saved over an existing id), and the queryset
refuses every update, upsert and delete, the private paths of `save_base()` and of a fast delete
included. In the database: triggers refuse UPDATE and DELETE on PostgreSQL and SQLite (migrations
0002 and 0003), whatever sends the SQL."""

from __future__ import annotations

from typing import Any, NoReturn

from django.conf import settings
from django.db import models
from django.utils import timezone


class AppendOnlyError(Exception):
    """Audit entries are written once and never changed or removed."""


class AuditEntryQuerySet(models.QuerySet["AuditEntry"]):
    def update(self, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError("Audit entries cannot be changed.")

    def _update(self, values: Any) -> NoReturn:
        raise AppendOnlyError("Audit entries cannot be changed.")

    def delete(self) -> NoReturn:
        raise AppendOnlyError("Audit entries cannot be deleted.")

    def _raw_delete(self, using: Any) -> NoReturn:
        raise AppendOnlyError("Audit entries cannot be deleted.")

    def bulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> list[AuditEntry]:
        if kwargs.get("update_conflicts"):  # an upsert writes over the entry it conflicts with
            raise AppendOnlyError("Audit entries cannot be changed.")
        return super().bulk_create(objs, *args, **kwargs)


class AuditEntry(models.Model):
    class Action(models.TextChoices):
        READ = "read", "Read"
        REFUSED = "refused", "Refused access"
        CREATE = "create", "Create"
        CHANGE = "change", "Change"
        UPLOAD = "upload", "Upload"
        RERUN = "rerun", "Rerun"
        REVIEW = "review", "Review"
        TEAM_MOVE = "team_move", "Team move"
        LOGIN = "login", "Login"
        LOGIN_FAILED = "login_failed", "Failed login"
        LOCKOUT = "lockout", "Lockout"
        LOGOUT = "logout", "Logout"
        TOKEN_REVOKE = "token_revoke", "Token revocation"
        INTEGRITY = "integrity", "File integrity"
        PURGE = "purge", "Retention purge"
        SWEEP = "sweep", "Orphan file sweep"
        DELETE = "delete", "Delete"

    class Outcome(models.TextChoices):
        OK = "ok", "OK"
        REFUSED = "refused", "Refused"
        FAILED = "failed", "Failed"

    class Channel(models.TextChoices):
        PAGE = "page", "Page"
        API = "api", "API"
        ADMIN = "admin", "Admin"
        SYSTEM = "system", "Worker or command"

    at = models.DateTimeField(default=timezone.now, db_index=True)
    # PROTECT: users are deactivated, never deleted, so every entry keeps its author.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    username = models.CharField(max_length=150, blank=True, help_text="as typed, for failed logins")
    client_address = models.GenericIPAddressField(null=True, blank=True)
    channel = models.CharField(max_length=8, choices=Channel.choices)
    action = models.CharField(max_length=16, choices=Action.choices)
    object_type = models.CharField(max_length=32, blank=True)
    object_id = models.PositiveBigIntegerField(null=True, blank=True)
    # A plain id, not a foreign key: the entry must outlive a patient removed by retention.
    patient_id = models.PositiveBigIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=8, choices=Outcome.choices, default=Outcome.OK)
    changes = models.JSONField(default=dict, blank=True, help_text="field: [before, after]")
    detail = models.CharField(max_length=500, blank=True)

    objects = AuditEntryQuerySet.as_manager()

    # What an entry says, in this order, wherever entries leave the portal (CSV export, API).
    EXPORTED_FIELDS = (
        "id",
        "at",
        "user",
        "username",
        "client_address",
        "channel",
        "action",
        "object_type",
        "object_id",
        "patient_id",
        "outcome",
        "changes",
        "detail",
    )

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name_plural = "audit entries"
        # Django's own writes (`save_base`'s UPDATE) go through the guarded queryset too.
        base_manager_name = "objects"
        indexes = [
            models.Index(fields=["patient_id", "-at"], name="audit_patient_at"),
            models.Index(fields=["user", "-at"], name="audit_user_at"),
            models.Index(fields=["action", "-at"], name="audit_action_at"),
        ]

    def __str__(self) -> str:
        who = self.username or "system"
        what = f"{self.object_type} {self.object_id}" if self.object_id is not None else self.object_type
        return f"{self.at:%Y-%m-%d %H:%M:%S} {who} {self.action} {what}".strip()

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Insert this entry; never write over one (an instance made with an existing entry's id
        would otherwise be saved as an UPDATE of it)."""
        if args or kwargs.get("force_update") or kwargs.get("update_fields") is not None:
            raise AppendOnlyError("Audit entries cannot be changed.")
        if not self._state.adding or (
            self.pk is not None
            and type(self)._base_manager.using(kwargs.get("using")).filter(pk=self.pk).exists()
        ):
            raise AppendOnlyError("Audit entries cannot be changed.")
        kwargs["force_insert"] = True  # and should the id be taken meanwhile, the INSERT fails
        super().save(**kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError("Audit entries cannot be deleted.")
