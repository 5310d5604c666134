"""Retention: removing a patient's whole record, rows and files together, when a hospital's
policy requires it. Only the `purge_records` command calls it; nothing clinical is removed by a
cascade (every foreign key of the record is PROTECT), so the record is deleted bottom-up here.

The audit trail keeps its entries about the patient (they hold plain ids) and gains one `purge`
entry per patient, with counts and never a name or MRN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time

from django.db import transaction
from django.db.models import Max, Q, QuerySet
from django.utils import timezone

from audit import trail

from ..models import Addendum, Patient, Prediction, PredictionRun, Review, Scan, Slice, SliceResult, Study
from .storage import files_delete


class RetentionError(ValueError):
    """A selection that cannot be purged as asked (unknown patients, nothing to select by)."""


@dataclass(frozen=True)
class PurgeSummary:
    """What a patient's record holds: what a purge removes, or removed."""

    patient_id: int
    scans: int
    slices: int
    predictions: int
    prediction_runs: int
    slice_results: int
    reviews: int
    files: tuple[str, ...]

    def describe(self) -> str:
        counts = {
            "scans": self.scans,
            "slices": self.slices,
            "predictions": self.predictions,
            "earlier runs": self.prediction_runs,
            "slice results": self.slice_results,
            "reviews": self.reviews,
            "files": len(self.files),
        }
        return ", ".join(f"{count} {what}" for what, count in counts.items())


def patients_to_purge(*, patient_ids: Sequence[int] = (), before: date | None = None) -> list[int]:
    """The ids of the patients named, or of every patient whose newest scan was taken before
    `before` (a patient without scans: registered before it). Unknown ids are refused."""
    if patient_ids and before is not None:
        raise RetentionError("Select the patients either by id or by date, not both.")
    if patient_ids:
        wanted = set(patient_ids)
        found = set(Patient.objects.filter(pk__in=wanted).values_list("pk", flat=True))
        if missing := sorted(wanted - found):
            raise RetentionError(f"No patient with id {', '.join(map(str, missing))}; nothing was purged.")
        return sorted(found)
    if before is None:
        raise RetentionError("Select the patients to purge, by id or by date.")
    start = timezone.make_aware(datetime.combine(before, time.min))
    return list(
        Patient.objects.annotate(newest_study=Max("scans__study_date"))
        .filter(Q(newest_study__lt=before) | Q(newest_study__isnull=True, created_at__lt=start))
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def patient_purge_plan(*, patient_id: int) -> PurgeSummary:
    """What `patient_purge` would remove, removing nothing."""
    return _summary(patient_id)


def patient_purge(*, patient_id: int) -> PurgeSummary:
    """Delete one patient's record in one transaction, bottom-up, and its files once that commits.

    The files go only after the commit: a rollback leaves rows and files as they were, and a crash
    between the commit and the deletion leaves orphans for `media_sweep`, never rows without files.
    """
    with transaction.atomic():
        # Locked: an upload for this patient waits, then finds no patient.
        Patient.objects.select_for_update().get(pk=patient_id)
        summary = _summary(patient_id)
        Addendum.objects.filter(report__study__patient_id=patient_id).delete()
        _reviews_delete(Review.objects.filter(prediction__scan__patient_id=patient_id))
        _slice_results(patient_id).delete()
        PredictionRun.objects.filter(prediction__scan__patient_id=patient_id).delete()
        Prediction.objects.filter(scan__patient_id=patient_id).delete()
        Slice.objects.filter(scan__patient_id=patient_id).delete()
        Scan.objects.filter(patient_id=patient_id).delete()
        Study.objects.filter(patient_id=patient_id).delete()
        Patient.objects.filter(pk=patient_id).delete()
        trail.record(
            trail.Action.PURGE,
            object_type="patient",
            object_id=patient_id,
            patient_id=patient_id,
            detail=f"Record removed under the retention policy: {summary.describe()}.",
        )
        files = summary.files
        transaction.on_commit(lambda: files_delete(files))
    return summary


def _reviews_delete(reviews: QuerySet[Review]) -> None:
    """A correction protects the review it supersedes: delete the newest of each line first.
    (Should a line ever loop, nothing is deleted and the prediction's PROTECT stops the purge.)"""
    while reviews.filter(superseded_by__isnull=True).delete()[0]:
        pass


def _summary(patient_id: int) -> PurgeSummary:
    slices = Slice.objects.filter(scan__patient_id=patient_id)
    results = _slice_results(patient_id)
    files = [name for row in slices.values_list("image", "thumbnail", "hounsfield") for name in row]
    files += results.exclude(heatmap="").values_list("heatmap", flat=True)
    return PurgeSummary(
        patient_id=patient_id,
        scans=Scan.objects.filter(patient_id=patient_id).count(),
        slices=slices.count(),
        predictions=Prediction.objects.filter(scan__patient_id=patient_id).count(),
        prediction_runs=PredictionRun.objects.filter(prediction__scan__patient_id=patient_id).count(),
        slice_results=results.count(),
        reviews=Review.objects.filter(prediction__scan__patient_id=patient_id).count(),
        files=tuple(name for name in files if name),
    )


def _slice_results(patient_id: int) -> QuerySet[SliceResult]:
    return SliceResult.objects.filter(
        Q(prediction__scan__patient_id=patient_id) | Q(slice__scan__patient_id=patient_id)
    )
