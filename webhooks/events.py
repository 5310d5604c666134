"""The clinical core's events as webhook events: `event_receive`, the outbox's subscriber (registered
in WebhooksConfig.ready), and `emit`, the same recorded directly (the webhook tests use it).

Payloads carry ids and links only (the portal's API and FHIR), never images or patient details:
a receiver follows the links with its own token to read what it is allowed to."""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.db.models import Model
from django.urls import reverse
from django.utils import timezone

from cases.events import subject_ids
from cases.models import CareTeam, Prediction, Review, Scan
from fhir_api.links import resource_url

from .models import EventType, WebhookDelivery, WebhookEndpoint, WebhookEvent, new_event_id

if TYPE_CHECKING:
    from outbox.models import OutboxEvent

logger = logging.getLogger(__name__)

PREDICTION_EVENTS = {
    EventType.PREDICTION_SUCCEEDED,
    EventType.PREDICTION_FAILED,
    EventType.PREDICTION_NOT_ASSESSABLE,
}
REVIEW_EVENTS = {EventType.REVIEW_SIGNED, EventType.REVIEW_AMENDED}


def emit(event_type: str, *, team: CareTeam, subject: Model) -> WebhookEvent | None:
    """Record an event for `team` about `subject` (a Prediction for prediction.*, a Review for
    review.*, a Scan for study.received) and a delivery to each of the team's endpoints
    subscribed to it; those of enabled endpoints are sent once the surrounding transaction
    commits, those of disabled ones are held until the endpoint is enabled again.

    No portal code calls it any more (the clinical services publish to the outbox, which reaches
    webhooks through `event_receive`); the webhook tests record events with it directly. None when
    no endpoint subscribes to the event. Call it
    inside the transaction of the change. A webhook fault never undoes the change: it is logged
    and the event is lost (ValueError for a wrong type or subject is raised, being a caller's bug).
    """
    if event_type not in EventType.values:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    _subject_check(EventType(event_type), subject)
    try:
        with transaction.atomic():  # a savepoint: the caller's transaction survives a fault here
            return _record(
                event_type,
                team_id=team.pk,
                ids=subject_ids(subject),
                at=timezone.now(),
                event_id=new_event_id(),
            )
    except Exception:
        logger.exception("Emitting webhook event %s for %r failed", event_type, subject)
        return None


def event_receive(event: OutboxEvent) -> None:
    """The outbox's subscriber: the clinical event as a webhook event and its deliveries, in the
    transaction that marks it handed to webhooks (a fault raises: the outbox tries again). The
    webhook-id comes from the outbox event, so it is the same whoever dispatches it."""
    if event.topic not in EventType.values:
        return
    _record(
        event.topic,
        team_id=event.team_id,
        ids=event.payload,
        at=event.created_at,
        event_id=f"evt_{event.uuid.hex}",
    )


def _record(
    event_type: str, *, team_id: int, ids: dict[str, Any], at: dt.datetime, event_id: str
) -> WebhookEvent | None:
    # Few endpoints per team: filtered here, as SQLite cannot look inside a JSON list. Disabled
    # endpoints get their deliveries too, held: they go out when the endpoint is enabled again.
    endpoints = [e for e in WebhookEndpoint.objects.filter(team_id=team_id) if e.subscribes_to(event_type)]
    if not endpoints:
        return None
    event = WebhookEvent(event_id=event_id, type=event_type, team_id=team_id, created_at=at)
    event.payload = {
        "type": event_type,
        "timestamp": at.isoformat().replace("+00:00", "Z"),
        "data": {"id": event.event_id, **_data(EventType(event_type), ids)},
    }
    event.save()
    held, pending = WebhookDelivery.State.HELD, WebhookDelivery.State.PENDING
    deliveries = WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(event=event, endpoint=endpoint, state=pending if endpoint.enabled else held)
            for endpoint in endpoints
        ]
    )
    ids_pending = [delivery.pk for delivery in deliveries if delivery.state == pending]
    if any(delivery.pk is None for delivery in deliveries):  # backends that return no ids
        ids_pending = list(
            WebhookDelivery.objects.filter(event=event, state=pending)
            .order_by("id")
            .values_list("pk", flat=True)
        )
    # robust: a broker that is down must not undo the change; the sweep sends them later.
    transaction.on_commit(lambda: _send_later(ids_pending), robust=True)
    return event


def _send_later(delivery_ids: list[int]) -> None:
    from .tasks import delivery_send

    for delivery_id in delivery_ids:
        delivery_send.apply_async(args=[delivery_id], retry=False)


# --- payloads -----------------------------------------------------------------------------------


def absolute(path: str) -> str:
    return path if "://" in path else f"{settings.PORTAL_BASE_URL}{path}"


def fhir_url(resource_type: str, resource_id: str | int) -> str:
    """The FHIR API's URL of a resource (fhir_api.links)."""
    return absolute(resource_url(None, resource_type, str(resource_id)))


def api_url(name: str, pk: int) -> str:
    return absolute(reverse(f"api:{name}-detail", args=[pk]))


SUBJECTS: dict[EventType, type[Model]] = {
    **{event_type: Prediction for event_type in PREDICTION_EVENTS},
    **{event_type: Review for event_type in REVIEW_EVENTS},
    EventType.STUDY_RECEIVED: Scan,
}


def _subject_check(event_type: EventType, subject: Model) -> None:
    expected = SUBJECTS[event_type]
    if not isinstance(subject, expected):
        raise ValueError(f"{event_type} is about a {expected.__name__}, not {type(subject).__name__}")


def _data(event_type: EventType, ids: dict[str, Any]) -> dict[str, Any]:
    # From the ids alone (cases.events.subject_ids): an event handed on after its subject was
    # purged still says what it was about.
    if event_type in REVIEW_EVENTS:
        return {
            "review": {
                "id": ids["review"],
                "supersedes": ids.get("supersedes"),
                "api": api_url("prediction", ids["prediction"]),
                "fhir": fhir_url("DiagnosticReport", f"review-{ids['review']}"),
            },
            **_prediction_data(ids),
        }
    if event_type in PREDICTION_EVENTS:
        return _prediction_data(ids)
    return {"scan": _scan_data(ids), "patient": _patient_data(ids["patient"])}


def _prediction_data(ids: dict[str, Any]) -> dict[str, Any]:
    prediction_id = ids["prediction"]
    return {
        "prediction": {
            "id": prediction_id,
            "api": api_url("prediction", prediction_id),
            "fhir": fhir_url("DiagnosticReport", f"prediction-{prediction_id}"),
        },
        "scan": _scan_data(ids),
        "patient": _patient_data(ids["patient"]),
    }


def _scan_data(ids: dict[str, Any]) -> dict[str, Any]:
    # FHIR has no resource for a series alone: the link is to the ImagingStudy that holds it.
    return {
        "id": ids["scan"],
        "api": api_url("scan", ids["scan"]),
        "fhir": fhir_url("ImagingStudy", ids["study"]),
    }


def _patient_data(patient_id: int) -> dict[str, Any]:
    return {"id": patient_id, "api": api_url("patient", patient_id), "fhir": fhir_url("Patient", patient_id)}
