"""Everything that writes to the clinical record. Keyword-only arguments, `<noun>_<verb>` names."""

from __future__ import annotations

import hashlib
import io
import logging
import time
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import PurePath
from typing import IO, Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import (
    RequestDataTooBig,
    TooManyFieldsSent,
    TooManyFilesSent,
    ValidationError,
)
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone
from PIL import Image

from inference.models import ModelVersion
from inference.preprocessing import CLASS_NAMES, ImageDecodeError, decode_image, preprocess
from inference.services import model_version_active

from .models import CareTeam, Patient, Prediction, Review, Scan, Slice, SliceResult

logger = logging.getLogger(__name__)

THUMBNAIL_SIZE = 160
ACCEPTED_FORMATS = {"JPEG": ("image/jpeg", "jpg"), "PNG": ("image/png", "png")}


class UploadError(ValidationError):
    """One or more files of an upload were refused; nothing was stored."""


# Django refuses a request over its own limits before our checks run; say why in our words.
REQUEST_LIMIT_ERRORS = (RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent)


def request_limit_message() -> str:
    return (
        f"The upload is too large: at most {settings.UPLOAD_MAX_FILES} files of at most "
        f"{settings.UPLOAD_MAX_FILE_BYTES // (1024 * 1024)} MB each per scan. Nothing was stored."
    )


class PredictionConflict(ValidationError):
    """The requested prediction exists already or cannot be re-run in its state."""


class PredictionRetry(Exception):
    """A transient failure: the prediction was put back in the queue and should be retried."""


# --- care teams and users -----------------------------------------------------------------------


def user_create(*, username: str, password: str, team_name: str, is_admin: bool = False) -> AbstractBaseUser:
    """Create a clinician (or an admin) in a care team, creating the team when new."""
    from django.contrib.auth.password_validation import validate_password

    User = get_user_model()
    user = User(username=username, is_staff=is_admin, is_superuser=is_admin)
    validate_password(password, user)
    user.full_clean(exclude=["password"])
    with transaction.atomic():
        user.set_password(password)
        user.save()
        team, _ = CareTeam.objects.get_or_create(name=team_name)
        team.members.add(user)
    return user


# --- patients -----------------------------------------------------------------------------------


def patient_create(
    *,
    team: CareTeam,
    mrn: str,
    name: str,
    birth_date: date,
    sex: str = Patient.Sex.UNKNOWN,
    created_by: AbstractBaseUser | None,
) -> Patient:
    patient = Patient(team=team, mrn=mrn.strip(), name=name.strip(), birth_date=birth_date, sex=sex)
    patient.created_by = created_by
    return _patient_save(patient)


def _patient_save(patient: Patient) -> Patient:
    patient.full_clean()
    try:
        with transaction.atomic():
            patient.save()
    except IntegrityError:  # a simultaneous request took the MRN between the check and the save
        raise ValidationError(
            {"mrn": ["A patient with this MRN already exists in this care team."]}
        ) from None
    return patient


def patient_update(*, patient: Patient, **fields: Any) -> Patient:
    allowed = {"team", "mrn", "name", "birth_date", "sex"}
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"cannot update {sorted(unknown)}")
    for field, value in fields.items():
        setattr(patient, field, value.strip() if isinstance(value, str) else value)
    return _patient_save(patient)


# --- uploads ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckedSlice:
    upload: IO[bytes]
    original_name: str
    content_type: str
    extension: str
    sha256: str
    width: int
    height: int
    size_bytes: int
    thumbnail_png: bytes


def display_name(name: str | None) -> str:
    """The client's file name, reduced to something safe to show (never used as a path)."""
    base = PurePath(str(name or "").replace("\\", "/")).name
    cleaned = "".join(ch for ch in base if unicodedata.category(ch)[0] not in {"C"})
    return cleaned[:100] or "unnamed"


def _read_limited(upload: IO[bytes], limit: int) -> bytes:
    upload.seek(0)
    data = upload.read(limit + 1)
    if len(data) > limit:
        raise ImageDecodeError(f"the file is larger than the {limit // (1024 * 1024)} MB limit")
    return data


def _has_trailing_data(data: bytes, fmt: str) -> bool:
    """Bytes after the image's own end marker: how polyglot files (image + HTML/ZIP) are built."""
    if fmt == "PNG":
        end = data.rfind(b"IEND")
        return end == -1 or len(data) > end + 8  # chunk type + CRC
    return not data.rstrip(b"\x00").endswith(b"\xff\xd9")  # JPEG: EOI last (NUL padding allowed)


def slice_check(upload: IO[bytes], *, name: str | None = None) -> CheckedSlice:
    """Decide by content whether an uploaded file is a usable CT slice; raise ImageDecodeError if not."""
    data = _read_limited(upload, settings.UPLOAD_MAX_FILE_BYTES)
    image = decode_image(data, max_pixels=settings.UPLOAD_MAX_PIXELS)
    if max(image.size) > settings.UPLOAD_MAX_SIDE:
        raise ImageDecodeError(
            f"the image is {image.width}×{image.height} pixels; the longest side may be "
            f"at most {settings.UPLOAD_MAX_SIDE}"
        )
    with Image.open(io.BytesIO(data)) as probe:
        fmt = (probe.format or "").upper()
    if fmt not in ACCEPTED_FORMATS:
        raise ImageDecodeError("not a JPEG or PNG image")
    if _has_trailing_data(data, fmt):
        raise ImageDecodeError(
            "the file carries extra data after the image (a polyglot?); export the slice again"
        )
    content_type, extension = ACCEPTED_FORMATS[fmt]
    thumb = image.copy()
    thumb.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    buffer = io.BytesIO()
    thumb.save(buffer, format="PNG")
    return CheckedSlice(
        upload=upload,
        original_name=display_name(name or getattr(upload, "name", "")),
        content_type=content_type,
        extension=extension,
        sha256=hashlib.sha256(data).hexdigest(),
        width=image.width,
        height=image.height,
        size_bytes=len(data),
        thumbnail_png=buffer.getvalue(),
    )


def _checked_uploads(files: Sequence[IO[bytes]]) -> list[CheckedSlice]:
    if not files:
        raise UploadError({"files": ["Choose at least one CT slice (JPEG or PNG)."]})
    if len(files) > settings.UPLOAD_MAX_FILES:
        raise UploadError(
            {"files": [f"{len(files)} files were sent; at most {settings.UPLOAD_MAX_FILES} per scan."]}
        )
    checked, problems = [], []
    for upload in files:
        name = display_name(getattr(upload, "name", ""))
        try:
            checked.append(slice_check(upload, name=name))
        except ImageDecodeError as exc:
            problems.append(f"{name}: {exc}")
    if problems:
        raise UploadError({"files": problems})
    return checked


def _delete_files(names: Sequence[str]) -> None:
    for name in names:
        default_storage.delete(name)


def _generated_name(folder: str, extension: str) -> str:
    now = timezone.now()
    return f"{folder}/{now:%Y/%m}/{uuid.uuid4().hex}.{extension}"


def scan_upload(
    *,
    patient: Patient,
    files: Sequence[IO[bytes]],
    uploaded_by: AbstractBaseUser | None,
    study_date: date | None = None,
    note: str = "",
) -> Scan:
    """Store a study's slices and queue its prediction, all or nothing.

    Every file is checked by content before anything is written; the scan, its slices and a
    queued prediction are committed together, and the task is sent only after the commit.
    """
    checked = _checked_uploads(files)
    version = _active_version()
    stored: list[str] = []
    try:
        with transaction.atomic():
            scan = Scan(patient=patient, study_date=study_date or date.today(), note=note or "")
            scan.uploaded_by = uploaded_by
            scan.full_clean(exclude=["patient", "uploaded_by"])
            scan.save()
            slices = []
            for position, item in enumerate(checked):
                item.upload.seek(0)
                image_name = default_storage.save(
                    _generated_name("slices", item.extension), ContentFile(item.upload.read())
                )
                stored.append(image_name)
                thumb_name = default_storage.save(
                    _generated_name("thumbs", "png"), ContentFile(item.thumbnail_png)
                )
                stored.append(thumb_name)
                slices.append(
                    Slice(
                        scan=scan,
                        position=position,
                        image=image_name,
                        thumbnail=thumb_name,
                        original_name=item.original_name,
                        content_type=item.content_type,
                        sha256=item.sha256,
                        width=item.width,
                        height=item.height,
                        size_bytes=item.size_bytes,
                    )
                )
            Slice.objects.bulk_create(slices)
            prediction = Prediction.objects.create(scan=scan, model_version=version, requested_by=uploaded_by)
            _enqueue_on_commit(prediction.pk)
    except BaseException:
        _delete_files(stored)
        raise
    return scan


# --- reviews ------------------------------------------------------------------------------------


def review_submit(
    *, prediction: Prediction, reviewer: AbstractBaseUser, verdict: str, label: str = "", comment: str = ""
) -> Review:
    """Record a clinician's agreement with, or correction of, a finished prediction."""
    if prediction.status != Prediction.Status.SUCCEEDED:
        raise ValidationError("Only a succeeded prediction can be reviewed.")
    if verdict == Review.Verdict.AGREE:
        if label and label != prediction.label:
            raise ValidationError(
                {"label": [f"Agreeing means the label is {prediction.label}; choose disagree."]}
            )
        label = prediction.label
    elif verdict == Review.Verdict.DISAGREE:
        if not label:
            raise ValidationError({"label": ["Give the label you read when you disagree."]})
        if label == prediction.label:
            raise ValidationError({"label": ["That is the model's label: choose agree instead."]})
    review = Review(
        prediction=prediction, reviewer=reviewer, verdict=verdict, label=label, comment=comment.strip()
    )
    review.full_clean()
    try:
        review.save()
    except IntegrityError:  # a double submit racing the check above
        raise ValidationError("You have already reviewed this prediction.") from None
    return review


# --- predictions --------------------------------------------------------------------------------


def _active_version() -> ModelVersion:
    try:
        return model_version_active()
    except ModelVersion.DoesNotExist:
        raise ValidationError("No model version is active; ask an administrator to activate one.") from None


def _enqueue_on_commit(prediction_id: int) -> None:
    # robust: a broker that is down must not undo a committed upload; the sweep re-sends it.
    transaction.on_commit(lambda: prediction_enqueue(prediction_id=prediction_id), robust=True)


def prediction_enqueue(*, prediction_id: int) -> None:
    from .tasks import prediction_run

    prediction_run.apply_async(args=[prediction_id], retry=False)


def prediction_request(
    *, scan: Scan, requested_by: AbstractBaseUser | None, model_version: ModelVersion | None = None
) -> Prediction:
    """Classify a scan (again) with a model version, by default the active one, keeping old results."""
    version = model_version or _active_version()
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
            _enqueue_on_commit(prediction.pk)
    except IntegrityError:
        raise PredictionConflict(f"This scan already has a prediction from model {version}.") from None
    return prediction


def prediction_rerun(*, prediction: Prediction, requested_by: AbstractBaseUser | None) -> Prediction:
    """Put a failed or stale prediction back in the queue."""
    if not (prediction.status == Prediction.Status.FAILED or prediction.is_stale):
        raise PredictionConflict(
            f"Only a failed or stale prediction can be re-run; this one is {prediction.status}."
        )
    with transaction.atomic():
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
        _enqueue_on_commit(prediction.pk)
    prediction.refresh_from_db()
    return prediction


def _prediction_claim(prediction_id: int, task_id: str) -> Prediction | None:
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
    _our_run(prediction).update(
        status=Prediction.Status.FAILED, error=reason[:2000], finished_at=timezone.now()
    )


def _prediction_release(prediction: Prediction) -> None:
    """running -> queued, so that a retry (or the sweep) can claim it again."""
    _our_run(prediction).update(status=Prediction.Status.QUEUED, queued_at=timezone.now())


class PermanentFailure(Exception):
    """A reason that retrying will not fix, worded for a clinician."""


def _load_inputs(slices: Sequence[Slice]) -> list[Any]:
    inputs = []
    for item in slices:
        try:
            with default_storage.open(item.image.name, "rb") as handle:
                data = handle.read()
            inputs.append(preprocess(decode_image(data)))
        except (OSError, ImageDecodeError) as exc:
            raise PermanentFailure(
                f"Slice {item.position + 1} ({item.original_name}) could not be read: {exc}"
            ) from exc
    return inputs


def prediction_execute(*, prediction_id: int, task_id: str = "") -> None:
    """Run the CNN for one queued prediction and store its result; a no-op if it is not ours."""
    prediction = _prediction_claim(prediction_id, task_id)
    if prediction is None:
        return
    stored: list[str] = []
    try:
        from inference.predictor import get_predictor, heatmap_png  # TensorFlow: only in workers

        slices = list(prediction.scan.slices.order_by("position"))
        if not slices:
            raise PermanentFailure("The scan has no slices.")
        inputs = _load_inputs(slices)
        try:
            predictor = get_predictor(prediction.model_version.weights_path)
        except (OSError, ValueError) as exc:
            raise PermanentFailure(
                f"Model version {prediction.model_version} could not be loaded: {exc}"
            ) from exc
        started = time.perf_counter()
        probabilities = predictor.predict(inputs)
        inference_seconds = time.perf_counter() - started
        results = []
        for item, image, row in zip(slices, inputs, probabilities, strict=True):
            heat_name = default_storage.save(
                _generated_name("heatmaps", "png"), ContentFile(heatmap_png(image, predictor.heatmap(image)))
            )
            stored.append(heat_name)
            results.append(_slice_result(prediction, item, row, heat_name))
        mean = probabilities.mean(axis=0)
        if not _prediction_store(prediction, results, mean, inference_seconds):
            _delete_files(stored)  # another run of this prediction finished first
    except PermanentFailure as exc:
        _delete_files(stored)
        _prediction_fail(prediction, str(exc))
    except DatabaseError as exc:
        _delete_files(stored)
        connection.close()  # the connection may be dead (server restart, failover): start afresh
        _prediction_release(prediction)
        raise PredictionRetry(f"database error: {exc}") from exc
    except Exception as exc:
        _delete_files(stored)
        logger.exception("prediction %s failed", prediction_id)
        if prediction.attempts >= settings.PREDICTION_MAX_ATTEMPTS:
            _prediction_fail(
                prediction,
                f"The model could not classify this scan after {prediction.attempts} attempts "
                f"({type(exc).__name__}: {exc}).",
            )
            return
        _prediction_release(prediction)
        raise PredictionRetry(str(exc)) from exc


def _slice_result(prediction: Prediction, item: Slice, row: Any, heatmap: str) -> SliceResult:
    return SliceResult(
        prediction=prediction,
        slice=item,
        label=CLASS_NAMES[int(row.argmax())],
        p_normal=float(row[0]),
        p_benign=float(row[1]),
        p_malignant=float(row[2]),
        heatmap=heatmap,
    )


def _prediction_store(
    prediction: Prediction, results: list[SliceResult], mean: Any, inference_seconds: float
) -> bool:
    """Store the outcome once; False when the prediction is no longer ours to finish."""
    with transaction.atomic():
        current = Prediction.objects.select_for_update().get(pk=prediction.pk)
        if current.status != Prediction.Status.RUNNING or current.started_at != prediction.started_at:
            return False
        SliceResult.objects.bulk_create(results)
        current.label = CLASS_NAMES[int(mean.argmax())]
        current.p_normal, current.p_benign, current.p_malignant = (float(v) for v in mean)
        current.status = Prediction.Status.SUCCEEDED
        current.error = ""
        current.finished_at = timezone.now()
        current.inference_seconds = inference_seconds
        current.save()
    return True


def predictions_sweep() -> int:
    """Re-send predictions the broker lost (queued too long) or whose worker died (running past
    the hard time limit, after which no healthy run can still be going)."""
    now = timezone.now()
    lost_after = timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT) + settings.PREDICTION_LOST_GRACE
    lost = Prediction.objects.filter(status=Prediction.Status.RUNNING, started_at__lt=now - lost_after)
    forgotten = Prediction.objects.filter(
        status=Prediction.Status.QUEUED, queued_at__lt=now - settings.PREDICTION_REQUEUE_AFTER
    )
    resent = 0
    for prediction_id in [*lost.values_list("pk", flat=True), *forgotten.values_list("pk", flat=True)]:
        # Mark it queued "now" first, so that the next sweep does not send it again straight away.
        touched = Prediction.objects.filter(
            Q(status=Prediction.Status.QUEUED)
            | Q(status=Prediction.Status.RUNNING, started_at__lt=now - lost_after),
            pk=prediction_id,
        ).update(status=Prediction.Status.QUEUED, queued_at=now)
        if not touched:
            continue
        try:
            prediction_enqueue(prediction_id=prediction_id)
            resent += 1
        except Exception:  # broker still down: the next sweep tries again
            logger.warning("could not re-send prediction %s", prediction_id, exc_info=True)
    return resent
