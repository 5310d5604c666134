"""What the clinical services call when something happens: `emit`, inside their transaction.

Payloads carry ids and links only (the portal's API and FHIR), never images or patient details:
a receiver follows the links with its own token to read what it is allowed to."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Model
from django.urls import reverse

from cases.models import CareTeam, Prediction, Review, Scan
from fhir_api.links import resource_url

from .models import EventType, WebhookDelivery, WebhookEndpoint, WebhookEvent

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

    None when no endpoint subscribes to the event. Call it inside the transaction of the change:
    the event exists if and only if the change does. A webhook fault never undoes the change: it
    is logged and the event is lost (ValueError for a wrong type or subject is raised, being a
    caller's bug).
    """
    if event_type not in EventType.values:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    _subject_check(EventType(event_type), subject)
    try:
        with transaction.atomic():  # a savepoint: the caller's transaction survives a fault here
            return _record(event_type, team=team, subject=subject)
    except Exception:
        logger.exception("Emitting webhook event %s for %r failed", event_type, subject)
        return None


def _record(event_type: str, *, team: CareTeam, subject: Model) -> WebhookEvent | None:
    # Few endpoints per team: filtered here, as SQLite cannot look inside a JSON list. Disabled
    # endpoints get their deliveries too, held: they go out when the endpoint is enabled again.
    endpoints = [e for e in WebhookEndpoint.objects.filter(team=team) if e.subscribes_to(event_type)]
    if not endpoints:
        return None
    data = _data(EventType(event_type), subject)
    event = WebhookEvent(type=event_type, team=team, payload={})
    event.payload = {
        "type": event_type,
        "timestamp": event.created_at.isoformat().replace("+00:00", "Z"),
        "data": {"id": event.event_id, **data},
    }
    event.save()
    held, pending = WebhookDelivery.State.HELD, WebhookDelivery.State.PENDING
    deliveries = WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(event=event, endpoint=endpoint, state=pending if endpoint.enabled else held)
            for endpoint in endpoints
        ]
    )
    ids = [delivery.pk for delivery in deliveries if delivery.state == pending]
    if any(delivery.pk is None for delivery in deliveries):  # backends that return no ids
        ids = list(
            WebhookDelivery.objects.filter(event=event, state=pending)
            .order_by("id")
            .values_list("pk", flat=True)
        )
    # robust: a broker that is down must not undo the change; the sweep sends them later.
    transaction.on_commit(lambda: _send_later(ids), robust=True)
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


def _data(event_type: EventType, subject: Model) -> dict[str, Any]:
    if isinstance(subject, Prediction):
        return _prediction_data(subject)
    if isinstance(subject, Review):
        return {
            "review": {
                "id": subject.pk,
                "supersedes": subject.supersedes_id,
                "api": api_url("prediction", subject.prediction_id),
                "fhir": fhir_url("DiagnosticReport", f"review-{subject.pk}"),
            },
            **_prediction_data(subject.prediction),
        }
    assert isinstance(subject, Scan)
    return {"scan": _scan_data(subject), "patient": _patient_data(subject.patient_id)}


def _prediction_data(prediction: Prediction) -> dict[str, Any]:
    return {
        "prediction": {
            "id": prediction.pk,
            "api": api_url("prediction", prediction.pk),
            "fhir": fhir_url("DiagnosticReport", f"prediction-{prediction.pk}"),
        },
        "scan": _scan_data(prediction.scan),
        "patient": _patient_data(prediction.scan.patient_id),
    }


def _scan_data(scan: Scan) -> dict[str, Any]:
    # FHIR has no resource for a series alone: the link is to the ImagingStudy that holds it.
    return {"id": scan.pk, "api": api_url("scan", scan.pk), "fhir": fhir_url("ImagingStudy", scan.study_id)}


def _patient_data(patient_id: int) -> dict[str, Any]:
    return {"id": patient_id, "api": api_url("patient", patient_id), "fhir": fhir_url("Patient", patient_id)}
