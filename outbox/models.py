"""OutboxEvent: one thing that happened in the clinical core, waiting to be handed on."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone


class OutboxEvent(models.Model):
    """Written in the transaction of the change it describes, so it exists if and only if the
    change does; handed to each subscriber once (`handed_to`), then `dispatched_at` is set.

    The payload holds ids only (prediction, review, scan, study, patient): subscribers read what
    they need, and the outbox never holds patient details."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    topic = models.CharField(max_length=64)
    team_id = models.BigIntegerField(help_text="the care team the event belongs to")
    subject_type = models.CharField(max_length=64, help_text="app_label.model of the subject")
    subject_id = models.BigIntegerField()
    payload = models.JSONField(default=dict, help_text="ids only")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # Names of the subscribers it has reached: a failing one is tried again without the others.
    handed_to = models.JSONField(default=list)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(dispatched_at__isnull=True),
                name="outbox_waiting",
            )
        ]

    def __str__(self) -> str:
        state = "dispatched" if self.dispatched_at else "waiting"
        return f"{self.topic} {self.subject_type}:{self.subject_id} ({state})"
