"""The worker's state machine for one prediction: claim, run the CNN, store once, or fail or
release it for a retry.

queued -> running is claimed with a conditional UPDATE that counts the attempt, so a message
delivered twice finds nothing to claim; results are stored only while the row is still the run
that was claimed.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import DatabaseError, connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from inference.preprocessing import ImageDecodeError, inspect, named_probabilities, preprocess
from inference.services import model_version_predictor
from inference.study import StudyResult, study_result

from ..events import PREDICTION_FAILED, PREDICTION_NOT_ASSESSABLE, PREDICTION_SUCCEEDED, publish
from ..models import Prediction, Slice, SliceResult
from .storage import file_save, files_delete, slice_intact

logger = logging.getLogger(__name__)


# An absolute path of two or more parts, quoted or bare: the server's layout, not the reader's business.
_SERVER_PATH = re.compile(r"(?:/[\w.@+-]+){2,}/?")


def without_paths(text: str) -> str:
    """A reason fit for a clinician: server paths cut to their last part ("…/member1.keras")."""
    return _SERVER_PATH.sub(lambda m: "…/" + m.group(0).rstrip("/").rsplit("/", 1)[-1], text)


class PredictionRetry(Exception):
    """A transient failure: the prediction was put back in the queue and should be retried."""


class PermanentFailure(Exception):
    """A reason that retrying will not fix, worded for a clinician."""


def prediction_execute(*, prediction_id: int, task_id: str = "", worker: str = "") -> None:
    """Run the CNN for one queued prediction and store its result; a no-op if it is not ours."""
    prediction = _prediction_claim(prediction_id, task_id, worker)
    if prediction is None:
        return
    stored: list[str] = []
    try:
        _run(prediction, stored)
    except PermanentFailure as exc:
        files_delete(stored)
        _prediction_fail(prediction, str(exc))
    except DatabaseError as exc:
        files_delete(stored)
        connection.close()  # the connection may be dead (server restart, failover): start afresh
        _prediction_release(prediction)
        raise PredictionRetry(f"database error: {exc}") from exc
    except Exception as exc:
        files_delete(stored)
        logger.exception("prediction %s failed", prediction_id)
        if prediction.attempts >= settings.PREDICTION_MAX_ATTEMPTS:
            _prediction_fail(
                prediction,
                f"The model could not classify this scan after {prediction.attempts} attempts "
                f"({type(exc).__name__}: {without_paths(str(exc))}).",
            )
            return
        _prediction_release(prediction)
        raise PredictionRetry(str(exc)) from exc


def _run(prediction: Prediction, stored: list[str]) -> None:
    """Classify every assessable slice, decide the study result and store it; names of files
    written go into `stored`."""
    from inference.predictor import heatmap_png  # TensorFlow: only in workers

    slices = list(prediction.scan.slices.order_by("position"))
    if not slices:
        raise PermanentFailure("The scan has no slices.")
    try:
        predictor = model_version_predictor(prediction.model_version)
    except (OSError, ValueError) as exc:
        raise PermanentFailure(
            f"Model version {prediction.model_version} could not be loaded: {without_paths(str(exc))}"
        ) from exc
    reasons, inputs = _inputs(slices, predictor)
    started = time.perf_counter()
    rows = iter(predictor.predict([inputs[index] for index in sorted(inputs)]))
    inference_seconds = time.perf_counter() - started
    named: list[dict[str, float] | None] = [
        None if index in reasons else named_probabilities(next(rows)) for index in range(len(slices))
    ]
    study = study_result(named, predictor.rule)
    # Heatmaps where a reader looks first: the most suspicious slices (Grad-CAM costs a pass each).
    heatmaps: dict[int, str] = {}
    for index in study.ranking[: settings.INFERENCE_HEATMAP_SLICES]:
        # An RGBA overlay in the stored slice's geometry, laid over it by the viewer.
        overlay = heatmap_png(
            predictor.heatmap(inputs[index]), size=(slices[index].width, slices[index].height)
        )
        heatmaps[index] = file_save("heatmaps", "png", overlay)
        stored.append(heatmaps[index])
    results = [
        SliceResult(prediction=prediction, slice=item, assessable=False, reason=reasons[index])
        if probabilities is None
        else SliceResult(
            prediction=prediction,
            slice=item,
            heatmap=heatmaps.get(index, ""),
            **SliceResult.result_fields(probabilities),
        )
        for index, (item, probabilities) in enumerate(zip(slices, named, strict=True))
    ]
    outcome = Outcome(study, len(reasons), predictor.hashes, inference_seconds)
    if not _prediction_store(prediction, results, outcome):
        files_delete(stored)  # another run of this prediction finished first


@dataclass(frozen=True)
class Outcome:
    study: StudyResult
    not_assessable: int
    hashes: dict[str, str]
    inference_seconds: float


def _inputs(slices: Sequence[Slice], predictor: Any) -> tuple[dict[int, str], dict[int, np.ndarray]]:
    """Per slice index: why it is not assessable, or else the network's input."""
    reasons: dict[int, str] = {}
    inputs: dict[int, np.ndarray] = {}
    for index, item in enumerate(slices):
        try:
            with default_storage.open(item.image.name, "rb") as handle:
                content = handle.read()
            _slice_verify(item, content)
            found = inspect(content)
        except (OSError, ImageDecodeError) as exc:
            reason = without_paths(str(exc))
            raise PermanentFailure(
                f"Slice {item.position + 1} ({item.original_name}) could not be read: {reason}"
            ) from exc
        reason = predictor.not_assessable_reason(found)
        if reason is None:
            inputs[index] = preprocess(found.image, size=predictor.image_size)
        else:
            reasons[index] = reason
    return reasons, inputs


def _slice_verify(item: Slice, content: bytes) -> None:
    """The bytes read must be the bytes uploaded: a changed file is never classified."""
    if slice_intact(item, content, use="classified"):
        return
    raise PermanentFailure(
        f"Slice {item.position + 1} ({item.original_name}) no longer matches the checksum recorded at "
        "upload: its stored file has changed, so the scan was not classified. An administrator has been "
        "alerted through the audit trail."
    )


def _prediction_claim(prediction_id: int, task_id: str, worker: str = "") -> Prediction | None:
    """queued -> running, counting the attempt in the database.

    A message redelivered because its worker died (same task id) may take over its own
    `running` row; any other copy of the message finds nothing to claim.
    """
    claimable = Q(status=Prediction.Status.QUEUED)
    if task_id:
        claimable |= Q(status=Prediction.Status.RUNNING, task_id=task_id)
    claimed = Prediction.objects.filter(claimable, pk=prediction_id).update(
        status=Prediction.Status.RUNNING,
        task_id=task_id,
        worker=worker,
        started_at=timezone.now(),
        attempts=F("attempts") + 1,
    )
    if not claimed:
        return None
    prediction = Prediction.objects.select_related("model_version").get(pk=prediction_id)
    if prediction.attempts > settings.PREDICTION_MAX_ATTEMPTS:
        _prediction_fail(prediction, f"Gave up after {settings.PREDICTION_MAX_ATTEMPTS} attempts.")
        return None
    return prediction


def _our_run(prediction: Prediction) -> QuerySet[Prediction]:
    """The row, only while it is still the run we claimed (a takeover changes started_at)."""
    return Prediction.objects.filter(
        pk=prediction.pk, status=Prediction.Status.RUNNING, started_at=prediction.started_at
    )


def _prediction_fail(prediction: Prediction, reason: str) -> None:
    with transaction.atomic():
        failed = _our_run(prediction).update(
            status=Prediction.Status.FAILED, error=reason[:2000], finished_at=timezone.now()
        )
        if failed:
            publish(PREDICTION_FAILED, team=prediction.scan.patient.team, subject=prediction)


def _prediction_release(prediction: Prediction) -> None:
    """running -> queued, so that a retry (or the sweep) can claim it again."""
    _our_run(prediction).update(status=Prediction.Status.QUEUED, queued_at=timezone.now())


def _prediction_store(prediction: Prediction, results: list[SliceResult], outcome: Outcome) -> bool:
    """Store the outcome once; False when the prediction is no longer ours to finish."""
    study = outcome.study
    with transaction.atomic():
        current = Prediction.objects.select_for_update().get(pk=prediction.pk)
        if current.status != Prediction.Status.RUNNING or current.started_at != prediction.started_at:
            return False
        SliceResult.objects.bulk_create(results)
        if study.probabilities is not None:
            for field, value in Prediction.result_fields(study.probabilities).items():
                setattr(current, field, value)
        current.label = study.label  # the study rule's label, not the argmax of the mean
        current.suspicion = study.suspicion
        current.suspicious_slices = study.suspicious_slices
        current.not_assessable_slices = outcome.not_assessable
        current.finding = study.finding
        current.weights_sha256 = outcome.hashes
        current.status = Prediction.Status.SUCCEEDED
        current.error = ""
        current.finished_at = timezone.now()
        current.inference_seconds = outcome.inference_seconds
        current.save()
        # Heard by the integrations once committed (a DICOM study's SR to the PACS, webhooks).
        event = PREDICTION_SUCCEEDED if current.has_result else PREDICTION_NOT_ASSESSABLE
        publish(event, team=current.scan.patient.team, subject=current)
    return True
