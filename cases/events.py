"""What the clinical core tells the world: `publish`, inside the transaction of the change.

The event is a row of the outbox (the core's own record), so it exists if and only if the change
does; integrations (webhooks, the PACS export, any later one) subscribe to it in the outbox and
are never named here. Payloads hold ids only, never patient details."""

from __future__ import annotations

from typing import Any

from django.db.models import Model

from outbox.services import event_record

from .models import CareTeam, Prediction, Review, Scan

PREDICTION_SUCCEEDED = "prediction.succeeded"
PREDICTION_FAILED = "prediction.failed"
PREDICTION_NOT_ASSESSABLE = "prediction.not_assessable"
REVIEW_SIGNED = "review.signed"
REVIEW_AMENDED = "review.amended"
STUDY_RECEIVED = "study.received"

# Each event and what it is about.
SUBJECTS: dict[str, type[Model]] = {
    PREDICTION_SUCCEEDED: Prediction,
    PREDICTION_FAILED: Prediction,
    PREDICTION_NOT_ASSESSABLE: Prediction,
    REVIEW_SIGNED: Review,
    REVIEW_AMENDED: Review,
    STUDY_RECEIVED: Scan,
}
EVENTS = tuple(SUBJECTS)


def publish(event: str, *, team: CareTeam, subject: Model) -> None:
    """Record `event` about `subject` (a Prediction for prediction.*, a Review for review.*, a
    Scan for study.received) for `team`, in the caller's transaction. ValueError for an unknown
    event or the wrong subject (a caller's bug)."""
    expected = SUBJECTS.get(event)
    if expected is None:
        raise ValueError(f"unknown event {event!r}")
    if not isinstance(subject, expected):
        raise ValueError(f"{event} is about a {expected.__name__}, not {type(subject).__name__}")
    event_record(event, team_id=team.pk, subject=subject, payload=subject_ids(subject))


def subject_ids(subject: Model) -> dict[str, Any]:
    """The ids an event carries: its subject's and those of the records above it."""
    if isinstance(subject, Review):
        return {
            "review": subject.pk,
            "supersedes": subject.supersedes_id,
            **subject_ids(subject.prediction),
        }
    if isinstance(subject, Prediction):
        return {"prediction": subject.pk, **subject_ids(subject.scan)}
    if isinstance(subject, Scan):
        return {"scan": subject.pk, "study": subject.study_id, "patient": subject.patient_id}
    raise ValueError(f"no event is about a {type(subject).__name__}")
