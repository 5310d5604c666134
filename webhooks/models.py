"""Endpoints, the hosts they may point at, the events sent and the log of every delivery."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from cases.models import CareTeam


class EventType(models.TextChoices):
    PREDICTION_SUCCEEDED = "prediction.succeeded", "Prediction succeeded"
    PREDICTION_FAILED = "prediction.failed", "Prediction failed"
    PREDICTION_NOT_ASSESSABLE = "prediction.not_assessable", "Prediction: not assessable"
    REVIEW_SIGNED = "review.signed", "Review signed"
    REVIEW_AMENDED = "review.amended", "Review amended"
    STUDY_RECEIVED = "study.received", "Study received"


class AllowedWebhookHost(models.Model):
    """A host (or host:port) webhook endpoints may point at. Nothing else is ever called."""

    pattern = models.CharField(
        max_length=255,
        unique=True,
        help_text=(
            "hooks.example.org, hooks.example.org:8443 or *.example.org (any subdomain); "
            "without a port, any port matches"
        ),
    )
    allow_private = models.BooleanField(
        "allow private addresses",
        default=False,
        help_text=(
            "let this host be (or resolve to) a loopback, private or link-local address; "
            "leave off unless the receiver is on the hospital network"
        ),
    )
    description = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["pattern"]
        verbose_name = "allowed webhook host"

    def __str__(self) -> str:
        return self.pattern


class WebhookEndpoint(models.Model):
    """Where a care team's events go, and which ones. The secret signs every request."""

    team = models.ForeignKey(CareTeam, on_delete=models.PROTECT, related_name="webhook_endpoints")
    url = models.URLField("URL", max_length=500)
    events = models.JSONField(default=list, help_text="the event types sent to this endpoint")
    description = models.CharField(max_length=200, blank=True)
    # Standard Webhooks format (whsec_ + base64); shown once, when the endpoint is made.
    secret = models.CharField(max_length=100, editable=False)
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=500, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(
        default=0, help_text="deliveries in a row that ended failed after every attempt"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["team__name", "url", "id"]
        verbose_name = "webhook endpoint"

    def __str__(self) -> str:
        return f"{self.url} ({self.team})"

    def subscribes_to(self, event_type: str) -> bool:
        """Whether the endpoint's events include `event_type` (enabled or not)."""
        return event_type in (self.events or [])


def new_event_id() -> str:
    return f"evt_{uuid.uuid4().hex}"


class WebhookEvent(models.Model):
    """Something that happened, as sent to every endpoint subscribed at the time. Never changed."""

    event_id = models.CharField(
        max_length=40, unique=True, default=new_event_id, editable=False, help_text="sent as webhook-id"
    )
    type = models.CharField(max_length=32, choices=EventType.choices)
    team = models.ForeignKey(CareTeam, on_delete=models.PROTECT, related_name="+")
    payload = models.JSONField(help_text="the body sent: type, timestamp and data (ids and links)")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-id"]
        verbose_name = "webhook event"

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"


class WebhookDelivery(models.Model):
    """One event to one endpoint: pending → sending → delivered, or failed after every attempt.
    Held while its endpoint is disabled (recorded, not sent); pending again, with every attempt
    still to make, when the endpoint is enabled."""

    class State(models.TextChoices):
        HELD = "held", "Held (endpoint disabled)"
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING, db_index=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now, db_index=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["event", "endpoint"], name="webhook_delivery_once_per_endpoint"),
        ]

    def __str__(self) -> str:
        return f"{self.event} → {self.endpoint.url} ({self.state})"


class WebhookAttempt(models.Model):
    """One request made (or refused before it was made): the delivery log."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    at = models.DateTimeField(default=timezone.now)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.status_code or self.error[:40]}"

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300
