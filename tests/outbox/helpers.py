"""Hand on every waiting outbox event now, as the integrations worker would."""

from __future__ import annotations

from outbox.models import OutboxEvent
from outbox.services import event_dispatch


def relay() -> int:
    """Dispatch every waiting event (due or not); how many were finished."""
    waiting = OutboxEvent.objects.filter(dispatched_at__isnull=True).order_by("id")
    return sum(event_dispatch(pk) for pk in list(waiting.values_list("pk", flat=True)))
