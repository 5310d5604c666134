"""Webhook fixtures: a live receiver, the allow-list entry that lets it be called, an endpoint of
team A subscribed to everything, and a way to make time pass for the delivery backoff."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from django.db.models import F

from webhooks import services
from webhooks.events import emit
from webhooks.models import AllowedWebhookHost, EventType, WebhookDelivery, WebhookEndpoint, WebhookEvent

from .receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    live = Receiver()
    live.start()
    yield live
    live.stop()


@pytest.fixture
def local_hosts(db) -> AllowedWebhookHost:
    return AllowedWebhookHost.objects.create(pattern="127.0.0.1", allow_private=True, description="tests")


@pytest.fixture
def endpoint(team_a, admin_user, receiver, local_hosts) -> WebhookEndpoint:
    made, secret = services.endpoint_create(
        team=team_a, url=receiver.url, events=EventType.values, created_by=admin_user
    )
    receiver.secret = secret
    return made


@pytest.fixture
def sent_tasks(monkeypatch) -> list[int]:
    """Delivery ids the code asked Celery to send (the broker is not touched)."""
    from webhooks.tasks import delivery_send

    sent: list[int] = []
    monkeypatch.setattr(delivery_send, "apply_async", lambda args, **kwargs: sent.append(args[0]))
    return sent


def later(seconds: float) -> None:
    """Time passes for every waiting delivery: what was due in `seconds` is due now."""
    WebhookDelivery.objects.update(next_attempt_at=F("next_attempt_at") - dt.timedelta(seconds=seconds))


def drain() -> int:
    """Make one attempt at every delivery that is due, as the workers would; how many were made."""
    made = 0
    for delivery_id in list(services.deliveries_due().values_list("pk", flat=True)):
        try:
            services.delivery_send(delivery_id)
        except services.DeliveryRetry:
            pass
        made += 1
    return made


def emitted(event_type: str, *, team, subject) -> WebhookEvent:
    """emit, for a team with a subscribed endpoint: the event (never None)."""
    event = emit(event_type, team=team, subject=subject)
    assert event is not None
    return event
