"""Events written and handed on.

`event_record` writes the row in the caller's transaction and, once that commits, dispatches it
there and then (`event_dispatch`: database rows only, the subscribers' network work goes to their
own queue); the beat sweep (`events_sweep`, on the integrations worker) dispatches whatever that
missed (a process killed between commit and hand-off, a failing subscriber). Dispatching in
place rather than by a message keeps a broker outage from costing every change a second failed
send. Each event is claimed with a row lock (SKIP LOCKED on PostgreSQL; SQLite's writers
queue behind one another) and marked handed to a subscriber in the same transaction as the rows
that subscriber writes: a crash undoes both, and a second relay finds it done.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Model
from django.utils import timezone

from .models import OutboxEvent
from .registry import subscribers

logger = logging.getLogger(__name__)

# The committing process dispatches at once; the sweep leaves younger events to it.
SWEEP_AFTER = timedelta(seconds=5)
SWEEP_BATCH = 500
BACKOFF_FIRST = 30  # seconds before a failing subscriber is tried again; doubled each time
BACKOFF_MAX = 3600  # then hourly, for ever: an event is never dropped, its last_error says why


def event_record(topic: str, *, team_id: int, subject: Model, payload: dict[str, Any]) -> OutboxEvent:
    """Record `topic` about `subject` for the team, in the caller's transaction; dispatched once
    it commits. Call it inside the transaction of the change."""
    event = OutboxEvent.objects.create(
        topic=topic,
        team_id=team_id,
        subject_type=subject._meta.label_lower,
        subject_id=subject.pk,
        payload=payload,
    )
    event_id = event.pk
    # robust: the change is committed whatever happens here; the sweep dispatches it later.
    transaction.on_commit(lambda: event_dispatch(event_id), robust=True)
    return event


def event_dispatch(event_id: int) -> bool:
    """Hand one event to each subscriber it has not reached yet; True when this call finished it.

    Idempotent: an event dispatched already, or held by another relay right now, is left alone
    (False). A subscriber that raises is rolled back alone (the others keep their rows) and tried
    again by the sweep after a backoff."""
    with transaction.atomic():
        event = (
            OutboxEvent.objects.select_for_update(skip_locked=True)
            .filter(pk=event_id, dispatched_at__isnull=True)
            .first()
        )
        if event is None:
            return False
        errors = []
        for name, handler in subscribers(event.topic).items():
            if name in event.handed_to:
                continue
            try:
                with transaction.atomic():  # a savepoint: one subscriber's fault undoes its rows only
                    handler(event)
            except Exception as exc:
                logger.exception("Outbox event %s (%s) not handed to %s", event.pk, event.topic, name)
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
                continue
            event.handed_to = [*event.handed_to, name]
        event.attempts += 1
        now = timezone.now()
        if errors:
            event.last_error = "\n".join(errors)[:2000]
            event.next_attempt_at = now + timedelta(seconds=event_backoff(event.attempts))
        else:
            event.last_error = ""
            event.dispatched_at = now
        event.save(update_fields=["handed_to", "attempts", "last_error", "next_attempt_at", "dispatched_at"])
    return not errors


def event_backoff(attempts: int) -> int:
    """Seconds to wait after `attempts` dispatches with a failing subscriber: 30, 60 ... 3600."""
    return min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** max(0, attempts - 1))


def events_due() -> list[int]:
    """Waiting events the committing process should have dispatched by now, oldest first."""
    now = timezone.now()
    return list(
        OutboxEvent.objects.filter(
            dispatched_at__isnull=True, next_attempt_at__lte=now, created_at__lte=now - SWEEP_AFTER
        )
        .order_by("next_attempt_at", "id")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )


def events_sweep() -> int:
    """Dispatch every due event (beat, every minute); how many this call finished. One event that
    cannot be dispatched does not hold up the rest: it is logged and waits for the next sweep."""
    finished = 0
    for event_id in events_due():
        try:
            finished += event_dispatch(event_id)
        except Exception:
            logger.exception("Outbox event %s could not be dispatched; the next sweep tries again", event_id)
    return finished
