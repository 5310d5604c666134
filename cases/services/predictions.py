"""Asking for predictions: queue one, re-run a failed or stale one, re-send what was lost.

The database is the source of truth and the broker only a doorbell: a task is sent after the
commit, and the sweep re-sends rows that the `Prediction.staleness_limits` rule calls lost.
"""

from __future__ import annotations

import logging

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from audit import trail
from inference.models import ModelVersion
from inference.services import model_version_active

from ..models import Prediction, PredictionRun, Scan

logger = logging.getLogger(__name__)


class PredictionConflict(ValidationError):
    """The requested prediction exists already or cannot be re-run in its state."""


def active_version() -> ModelVersion:
    try:
        return model_version_active()
    except ModelVersion.DoesNotExist:
        raise ValidationError("No model version is active; ask an administrator to activate one.") from None


def enqueue_on_commit(prediction_id: int) -> None:
    # robust: a broker that is down must not undo a committed upload; the sweep re-sends it.
    transaction.on_commit(lambda: prediction_enqueue(prediction_id=prediction_id), robust=True)


def prediction_enqueue(*, prediction_id: int) -> None:
    from ..tasks import prediction_run

    prediction_run.apply_async(args=[prediction_id], retry=False)


def prediction_request(
    *, scan: Scan, requested_by: User | None, model_version: ModelVersion | None = None
) -> Prediction:
    """Classify a scan (again) with a model version, by default the active one, keeping old results."""
    version = model_version or active_version()
    existing = scan.predictions.filter(model_version=version).first()
    if existing is not None:
        if existing.status == Prediction.Status.FAILED or existing.is_stale:
            return prediction_rerun(prediction=existing, requested_by=requested_by)
        raise PredictionConflict(
            f"This scan already has a {existing.status} prediction from model {version}."
        )
    try:
        with transaction.atomic():
            prediction = Prediction.objects.create(
                scan=scan, model_version=version, requested_by=requested_by
            )
            trail.record_object(
                trail.Action.CREATE, prediction, user=requested_by, detail=f"with model {version}"
            )
            enqueue_on_commit(prediction.pk)
    except IntegrityError:
        raise PredictionConflict(f"This scan already has a prediction from model {version}.") from None
    return prediction


def prediction_rerun(*, prediction: Prediction, requested_by: User | None) -> Prediction:
    """Put a failed or stale prediction back in the queue, keeping the earlier run's error,
    attempts and requester as a `PredictionRun`."""
    if not (prediction.status == Prediction.Status.FAILED or prediction.is_stale):
        raise PredictionConflict(
            f"Only a failed or stale prediction can be re-run; this one is {prediction.status}."
        )
    with transaction.atomic():
        earlier = PredictionRun(
            prediction=prediction,
            status=prediction.status,
            error=prediction.error,
            attempts=prediction.attempts,
            task_id=prediction.task_id,
            requested_by_id=prediction.requested_by_id,
            queued_at=prediction.queued_at,
            started_at=prediction.started_at,
            finished_at=prediction.finished_at,
            rerun_by=requested_by,
        )
        updated = Prediction.objects.filter(
            pk=prediction.pk,
            status=prediction.status,
            queued_at=prediction.queued_at,
            started_at=prediction.started_at,
        ).update(
            status=Prediction.Status.QUEUED,
            error="",
            attempts=0,
            queued_at=timezone.now(),
            started_at=None,
            finished_at=None,
            requested_by=requested_by,
        )
        if not updated:
            raise PredictionConflict("The prediction changed meanwhile; reload the page and try again.")
        earlier.save()
        trail.record_object(
            trail.Action.RERUN,
            prediction,
            user=requested_by,
            detail=f"earlier run: {earlier.status}, {earlier.attempts} attempt(s)",
        )
        enqueue_on_commit(prediction.pk)
    prediction.refresh_from_db()
    return prediction


def predictions_sweep() -> int:
    """Re-send predictions the broker lost (queued too long) or whose worker died (running past
    the hard time limit, after which no healthy run can still be going)."""
    now = timezone.now()
    resent = 0
    for prediction_id in list(Prediction.objects.stale(now).values_list("pk", flat=True)):
        # Mark it queued "now" first, so that the next sweep does not send it again straight away.
        touched = (
            Prediction.objects.filter(pk=prediction_id)
            .filter(Q(status=Prediction.Status.QUEUED) | Prediction.stale_q(now))
            .update(status=Prediction.Status.QUEUED, queued_at=now)
        )
        if not touched:
            continue
        try:
            prediction_enqueue(prediction_id=prediction_id)
            resent += 1
        except Exception:  # broker still down: the next sweep tries again
            logger.warning("could not re-send prediction %s", prediction_id, exc_info=True)
    return resent
