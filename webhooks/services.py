"""Every webhook write: endpoints registered, enabled and disabled; deliveries sent, retried,
swept and sent again on request.

A delivery's attempts are counted in the database as they start (like pacs' result exports), so a
request that kills its worker still counts, and a message delivered twice finds nothing to claim.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Iterable
from typing import Any

import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import mail_admins, send_mail
from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from audit import trail
from cases.models import CareTeam

from . import hosts
from .models import EventType, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from .signing import secret_generate, signed_headers
from .transport import pinned_session

logger = logging.getLogger(__name__)

BACKOFF_FIRST = 30  # seconds before the second attempt; doubled each time
BACKOFF_MAX = 3600  # never more than an hour apart
# A claimed delivery is left alone this long past the request's timeout; after that the sweep
# takes its worker for dead and sends it again.
CLAIM_GRACE = 60
SWEEP_BATCH = 500
USER_AGENT = "LungPortal-Webhooks/1"
ACTIVE = [WebhookDelivery.State.PENDING, WebhookDelivery.State.SENDING]


class DeliveryRetry(Exception):
    """The attempt failed and the delivery will be tried again in `countdown` seconds."""

    def __init__(self, message: str, countdown: int) -> None:
        super().__init__(message)
        self.countdown = countdown


class AttemptFailed(Exception):
    """Why one request failed, in words a person can act on."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


def delivery_backoff(attempts: int) -> int:
    """Seconds to wait after `attempts` failed attempts: 30, 60, 120 ... at most 3600."""
    return min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** max(0, attempts - 1))


# --- endpoints ----------------------------------------------------------------------------------


def events_clean(events: Iterable[str]) -> list[str]:
    """Known event types, once each, in their declared order (ValueError names the unknown)."""
    chosen = set(events)
    unknown = chosen - set(EventType.values)
    if unknown:
        raise ValueError(f"unknown event types: {', '.join(sorted(unknown))}")
    return [value for value in EventType.values if value in chosen]


def endpoint_create(
    *,
    team: CareTeam,
    url: str,
    events: Iterable[str],
    created_by: Any,
    description: str = "",
    enabled: bool = True,
) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint with a new secret: (endpoint, secret). The secret is returned here
    to be shown once; it is never written to the trail or a log. Raises hosts.HostRefused."""
    hosts.registration_check(url)
    secret = secret_generate()
    endpoint = WebhookEndpoint.objects.create(
        team=team,
        url=url,
        events=events_clean(events),
        description=description,
        enabled=enabled,
        secret=secret,
        created_by=created_by,
    )
    trail.record_object(
        trail.Action.CREATE,
        endpoint,
        changes={"team": [None, team.pk], "url": [None, url], "events": [None, endpoint.events]},
    )
    return endpoint, secret


def endpoint_update(*, endpoint: WebhookEndpoint, **fields: Any) -> WebhookEndpoint:
    """Change url, events, description or enabled (audited field by field). Enabling a disabled
    endpoint clears its failures and lets its waiting deliveries go."""
    allowed = {"url", "events", "description", "enabled", "team"}
    if set(fields) - allowed:
        raise ValueError(f"cannot change {', '.join(sorted(set(fields) - allowed))}")
    if "url" in fields:
        hosts.registration_check(fields["url"])
    if "events" in fields:
        fields["events"] = events_clean(fields["events"])
    before = {name: _value(endpoint, name) for name in fields}
    was_enabled = endpoint.enabled
    for name, value in fields.items():
        setattr(endpoint, name, value)
    if endpoint.enabled and not was_enabled:
        endpoint_failures_clear(endpoint)
    endpoint.save()
    changes = trail.changes_between(before, {name: _value(endpoint, name) for name in fields})
    if changes:
        trail.record_object(trail.Action.CHANGE, endpoint, changes=changes)
    return endpoint


def _value(endpoint: WebhookEndpoint, name: str) -> Any:
    return endpoint.team_id if name == "team" else getattr(endpoint, name)


def endpoint_failures_clear(endpoint: WebhookEndpoint) -> None:
    """For an endpoint being enabled again: forget its failures and, once committed, send what
    waited while it was disabled, oldest event first (`_endpoint_resume`). The caller saves it."""
    endpoint.disabled_reason = ""
    endpoint.disabled_at = None
    endpoint.consecutive_failures = 0
    endpoint_id = endpoint.pk
    transaction.on_commit(lambda: _endpoint_resume(endpoint_id), robust=True)


def _endpoint_resume(endpoint_id: int) -> None:
    """An endpoint enabled again: its held deliveries (events that happened while it was
    disabled) become pending with every attempt still to make, those waiting out a backoff are
    due now, and all are sent in event order.

    Held deliveries are sent however long they waited, even past the retry window: an event is
    never dropped unseen, and its payload's `timestamp` tells the receiver when it happened.
    Should this not run (a crash right after the commit), the sweep releases them."""
    WebhookDelivery.objects.filter(
        endpoint_id=endpoint_id,
        endpoint__enabled=True,
        state__in=[WebhookDelivery.State.HELD, WebhookDelivery.State.PENDING],
    ).update(state=WebhookDelivery.State.PENDING, next_attempt_at=timezone.now())
    deliveries_sweep(endpoint_id=endpoint_id)


def endpoint_enable(*, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """Enable an endpoint again (its failures forgotten, its waiting deliveries sent)."""
    return endpoint_update(endpoint=endpoint, enabled=True)


def endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    """Remove an endpoint with its delivery log (the events stay)."""
    trail.record_object(trail.Action.DELETE, endpoint, detail=str(endpoint))
    endpoint.delete()


def endpoint_disable(*, endpoint_id: int, reason: str) -> bool:
    """Disable an endpoint, saying why, and tell the admins (trail and mail). False if it was
    disabled already."""
    disabled = WebhookEndpoint.objects.filter(pk=endpoint_id, enabled=True).update(
        enabled=False, disabled_reason=reason[:500], disabled_at=timezone.now()
    )
    if not disabled:
        return False
    endpoint = WebhookEndpoint.objects.select_related("team").get(pk=endpoint_id)
    trail.record_object(
        trail.Action.CHANGE, endpoint, changes={"enabled": [True, False]}, detail=f"disabled: {reason}"
    )
    logger.warning("Webhook endpoint %s (%s) disabled: %s", endpoint.pk, endpoint.url, reason)
    subject = f"Webhook endpoint disabled: {endpoint.url}"
    message = (
        f"The webhook endpoint {endpoint.url} of care team {endpoint.team} was disabled.\n\n"
        f"Why: {reason}\n\n"
        "Its deliveries wait, and the events from now on are held for it. Once the receiver works "
        "again, enable the endpoint in Django admin (Webhooks → Webhook endpoints) and they are "
        "sent, oldest first; failed ones can be sent again from Webhook deliveries."
    )
    _tell_admins(subject, message)
    return True


def _tell_admins(subject: str, message: str) -> None:
    """ADMINS when configured, else every active superuser with an e-mail address."""
    try:
        if settings.ADMINS:
            mail_admins(subject, message)
            return
        recipients = list(
            get_user_model()
            .objects.filter(is_active=True, is_superuser=True)
            .exclude(email="")
            .values_list("email", flat=True)
        )
        if recipients:
            send_mail(settings.EMAIL_SUBJECT_PREFIX + subject, message, None, recipients)
    except Exception:  # a mail server that is down must not stop deliveries
        logger.exception("Could not mail the admins about: %s", subject)


# --- deliveries ---------------------------------------------------------------------------------


def delivery_send(delivery_id: int) -> WebhookDelivery | None:
    """Make one attempt at a due delivery: delivered on 2xx; else pending again (DeliveryRetry
    raised with the wait) or failed after WEBHOOK_MAX_ATTEMPTS.

    Idempotent: a delivery that is done, not yet due, claimed by another worker, or whose endpoint
    is disabled is left alone (None)."""
    now = timezone.now()
    claimed = WebhookDelivery.objects.filter(
        pk=delivery_id,
        state__in=ACTIVE,
        next_attempt_at__lte=now + dt.timedelta(seconds=1),  # a countdown that fires a tick early
        endpoint__enabled=True,
    ).update(
        state=WebhookDelivery.State.SENDING,
        attempts=F("attempts") + 1,
        next_attempt_at=now + dt.timedelta(seconds=settings.WEBHOOK_TIMEOUT_SECONDS + CLAIM_GRACE),
    )
    if not claimed:
        return None
    delivery = WebhookDelivery.objects.select_related("event", "endpoint").get(pk=delivery_id)
    started = timezone.now()
    clock = time.monotonic()
    status_code: int | None = None
    try:
        status_code = _post(delivery, started)
    except AttemptFailed as exc:
        latency = _ms_since(clock)
        return _attempt_failed(delivery, started, latency, str(exc), exc.status_code)
    except Exception as exc:  # a bug, but the delivery must still say it failed
        logger.exception("Webhook delivery %s failed unexpectedly", delivery_id)
        message = f"unexpected error: {type(exc).__name__}: {exc}"
        return _attempt_failed(delivery, started, _ms_since(clock), message, None)
    return _attempt_succeeded(delivery, started, _ms_since(clock), status_code)


def _ms_since(clock: float) -> int:
    return int(round((time.monotonic() - clock) * 1000))


def body_of(payload: dict[str, Any]) -> str:
    """The request body: the same bytes on every attempt."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True)


def _post(delivery: WebhookDelivery, at: dt.datetime) -> int:
    url = delivery.endpoint.url
    try:
        resolved = hosts.delivery_check(url)  # the name is resolved here, once
    except hosts.HostRefused as exc:
        raise AttemptFailed(f"not called: {exc}") from exc
    body = body_of(delivery.event.payload)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        **signed_headers(secret=delivery.endpoint.secret, msg_id=delivery.event.event_id, body=body, at=at),
    }
    timeout = settings.WEBHOOK_TIMEOUT_SECONDS
    try:
        # Sent to the checked address only (transport.PinnedAdapter). Redirects are not
        # followed: they could lead off the allow-list.
        with pinned_session(resolved) as session:
            reply = session.post(
                url, data=body.encode(), headers=headers, timeout=timeout, allow_redirects=False
            )
    except requests.exceptions.SSLError as exc:
        raise AttemptFailed(
            f"TLS with {url} failed (certificate not trusted or not for {resolved.target.host})"
        ) from exc
    except requests.exceptions.ConnectionError as exc:
        raise AttemptFailed(f"could not connect to {url} (refused or unreachable)") from exc
    except requests.exceptions.Timeout as exc:
        raise AttemptFailed(f"{url} did not answer within {timeout} s") from exc
    except requests.exceptions.RequestException as exc:
        raise AttemptFailed(f"request to {url} failed: {type(exc).__name__}") from exc
    with reply:
        if 200 <= reply.status_code < 300:
            return reply.status_code
        text = " ".join(reply.text[:300].split())[:200]
        raise AttemptFailed(
            f"HTTP {reply.status_code} {reply.reason}" + (f": {text}" if text else ""), reply.status_code
        )


def _attempt_succeeded(
    delivery: WebhookDelivery, at: dt.datetime, latency_ms: int, status_code: int
) -> WebhookDelivery:
    with transaction.atomic():
        WebhookAttempt.objects.create(
            delivery=delivery, at=at, status_code=status_code, latency_ms=latency_ms
        )
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            state=WebhookDelivery.State.DELIVERED,
            last_status_code=status_code,
            last_error="",
            delivered_at=timezone.now(),
        )
        WebhookEndpoint.objects.filter(pk=delivery.endpoint_id).update(consecutive_failures=0)
        endpoint_id = delivery.endpoint_id
        # The receiver answers again: what waits for it in backoff goes now, in event order.
        transaction.on_commit(lambda: _backlog_release(endpoint_id), robust=True)
    delivery.refresh_from_db()
    return delivery


def _backlog_release(endpoint_id: int) -> None:
    now = timezone.now()
    waiting = WebhookDelivery.objects.filter(
        endpoint_id=endpoint_id, state=WebhookDelivery.State.PENDING, next_attempt_at__gt=now
    )
    ids = list(waiting.order_by("event_id").values_list("pk", flat=True)[:SWEEP_BATCH])
    if ids:
        WebhookDelivery.objects.filter(pk__in=ids, state=WebhookDelivery.State.PENDING).update(
            next_attempt_at=now
        )
        _enqueue(ids)


def _attempt_failed(
    delivery: WebhookDelivery, at: dt.datetime, latency_ms: int, message: str, status_code: int | None
) -> WebhookDelivery:
    message = message[:500]
    last = delivery.attempts >= settings.WEBHOOK_MAX_ATTEMPTS
    wait = delivery_backoff(delivery.attempts)
    with transaction.atomic():
        WebhookAttempt.objects.create(
            delivery=delivery, at=at, status_code=status_code, latency_ms=latency_ms, error=message
        )
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            state=WebhookDelivery.State.FAILED if last else WebhookDelivery.State.PENDING,
            last_status_code=status_code,
            last_error=message,
            next_attempt_at=timezone.now() + dt.timedelta(seconds=wait),
        )
        if last:
            WebhookEndpoint.objects.filter(pk=delivery.endpoint_id).update(
                consecutive_failures=F("consecutive_failures") + 1
            )
            failures = WebhookEndpoint.objects.values_list("consecutive_failures", flat=True).get(
                pk=delivery.endpoint_id
            )
            if failures >= settings.WEBHOOK_DISABLE_AFTER:
                endpoint_disable(
                    endpoint_id=delivery.endpoint_id,
                    reason=(
                        f"{failures} deliveries in a row failed after {settings.WEBHOOK_MAX_ATTEMPTS} "
                        f"attempts each; the last: {message}"
                    ),
                )
    delivery.refresh_from_db()
    logger.warning(
        "Webhook delivery %s (%s to %s) failed, attempt %s of %s: %s",
        delivery.pk,
        delivery.event.event_id,
        delivery.endpoint.url,
        delivery.attempts,
        settings.WEBHOOK_MAX_ATTEMPTS,
        message,
    )
    if not last:
        raise DeliveryRetry(message, wait)
    return delivery


def deliveries_due(*, endpoint_id: int | None = None) -> QuerySet[WebhookDelivery]:
    """Deliveries whose time has come (a lost message, a backoff that ended, a worker that died
    while sending), of enabled endpoints, oldest event first."""
    due = WebhookDelivery.objects.filter(
        state__in=ACTIVE, next_attempt_at__lte=timezone.now(), endpoint__enabled=True
    )
    if endpoint_id is not None:
        due = due.filter(endpoint_id=endpoint_id)
    return due.order_by("event_id", "id")


def deliveries_sweep(*, endpoint_id: int | None = None) -> int:
    """Send every due delivery again (beat, every minute); how many were sent. Held deliveries
    of an endpoint that is enabled (one recorded while it was being enabled) are released first."""
    held = WebhookDelivery.objects.filter(state=WebhookDelivery.State.HELD, endpoint__enabled=True)
    if endpoint_id is not None:
        held = held.filter(endpoint_id=endpoint_id)
    held.update(state=WebhookDelivery.State.PENDING, next_attempt_at=timezone.now())
    ids = list(deliveries_due(endpoint_id=endpoint_id).values_list("pk", flat=True)[:SWEEP_BATCH])
    _enqueue(ids)
    return len(ids)


def delivery_redeliver(*, delivery: WebhookDelivery) -> None:
    """Send a delivery again from a fresh count of attempts, whatever its state (an admin asked).
    The receiver gets the same webhook-id and drops it if it has it already."""
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        state=WebhookDelivery.State.PENDING, attempts=0, next_attempt_at=timezone.now(), last_error=""
    )
    trail.record_object(trail.Action.CHANGE, delivery, detail="webhook delivery requested again")
    delivery_id = delivery.pk
    transaction.on_commit(lambda: _enqueue([delivery_id]), robust=True)


def _enqueue(delivery_ids: list[int]) -> None:
    from .tasks import delivery_send as task

    for delivery_id in delivery_ids:
        task.apply_async(args=[delivery_id], retry=False)
