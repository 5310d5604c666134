"""What the CNN said about a scan: the prediction, its per-slice results and earlier runs."""

from __future__ import annotations

import functools
import operator
from collections.abc import Mapping
from datetime import datetime, timedelta
from functools import reduce
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.db import models
from django.db.models import Exists, F, OuterRef, Q
from django.urls import reverse
from django.utils import timezone

from health.models import WorkerHeartbeat
from inference.artifacts import read_card
from inference.preprocessing import CLASS_NAMES, most_probable
from inference.study import RULE_SUMMARY, StudyRule

from .records import LABEL_CHOICES, Scan, Slice


class Probabilities(models.Model):
    """Per-class probabilities shared by a prediction and its per-slice results."""

    label = models.CharField(max_length=16, blank=True, choices=LABEL_CHOICES)
    p_normal = models.FloatField(null=True, blank=True)
    p_benign = models.FloatField(null=True, blank=True)
    p_malignant = models.FloatField(null=True, blank=True)

    # A prediction's probabilities are the mean over its assessable slices: a summary, not the
    # study's malignancy figure (that is its suspicion); a slice result's are the slice's own.
    is_mean_of_slices = False

    class Meta:
        abstract = True

    @property
    def probabilities(self) -> dict[str, float] | None:
        values = {name: getattr(self, f"p_{name}") for name in CLASS_NAMES}
        if any(value is None for value in values.values()):
            return None
        return values

    @staticmethod
    def result_fields(probabilities: Mapping[str, float]) -> dict[str, Any]:
        """The label (the most probable class) and the p_<class> fields, set by class name."""
        return {
            "label": most_probable(probabilities),
            **{f"p_{name}": float(probabilities[name]) for name in CLASS_NAMES},
        }


@functools.lru_cache(maxsize=32)
def _operating_rule(weights_dir: str, sha256: str) -> StudyRule | None:
    """The study rule on a model version's card (read once per process and version); None where
    the card cannot be read: a threshold is then not shown rather than guessed."""
    try:
        card = read_card(Path(weights_dir))
    except (OSError, ValueError):
        return None
    return StudyRule.from_card(card) if card else None  # no study_rule: the defaults it ran by


class PredictionQuerySet(models.QuerySet["Prediction"]):
    def stale(self, now: datetime | None = None) -> PredictionQuerySet:
        return self.filter(Prediction.stale_q(now or timezone.now()))


class Prediction(Probabilities):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    AGGREGATION_RULE = RULE_SUMMARY
    is_mean_of_slices = True

    scan = models.ForeignKey(Scan, on_delete=models.PROTECT, related_name="predictions")
    model_version = models.ForeignKey(
        "inference.ModelVersion", on_delete=models.PROTECT, related_name="predictions"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    task_id = models.CharField(max_length=255, blank=True, help_text="Celery task that claimed the last run")
    worker = models.CharField(
        max_length=255, blank=True, help_text="the worker running it (its heartbeat name)"
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    queued_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    inference_seconds = models.FloatField(null=True, blank=True)
    # The study-level result (inference.study): what a clinician reads first.
    suspicion = models.FloatField(
        null=True, blank=True, help_text="calibrated probability of malignancy of the study"
    )
    suspicious_slices = models.PositiveIntegerField(null=True, blank=True)
    not_assessable_slices = models.PositiveIntegerField(default=0)
    finding = models.CharField(max_length=300, blank=True, help_text="the study rule's conclusion, in words")
    weights_sha256 = models.JSONField(
        default=dict, blank=True, help_text="SHA-256 of each weights file that produced this result"
    )

    objects = PredictionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # A scan's (and through it a patient's) latest prediction: the worklist's prediction to
            # read, the patient list's latest result, the scan page's predictions in order.
            models.Index("scan", F("created_at").desc(), F("id").desc(), name="prediction_scan_latest"),
            models.Index(F("created_at").desc(), F("id").desc(), name="prediction_created"),  # default order
        ]
        constraints = [
            # A scan is classified once per model version: a failure is re-run in place.
            models.UniqueConstraint(fields=["scan", "model_version"], name="prediction_once_per_model"),
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running", "succeeded", "failed"]),
                name="prediction_status_valid",
            ),
            models.CheckConstraint(
                condition=~Q(status="succeeded") | ~Q(finding=""),
                name="prediction_succeeded_has_finding",
            ),
        ]

    def __str__(self) -> str:
        return f"Prediction {self.pk} ({self.status})"

    def get_absolute_url(self) -> str:
        return reverse("cases:prediction_detail", args=[self.pk])

    @property
    def audit_patient_id(self) -> int:
        return self.scan.patient_id

    @property
    def has_result(self) -> bool:
        """Succeeded with something to agree with or correct (not: no slice could be assessed)."""
        return self.status == self.Status.SUCCEEDED and (bool(self.label) or self.suspicion is not None)

    @property
    def export_or_none(self) -> Any:
        """Its DICOM SR export (pacs.ResultExport), if one was made."""
        try:
            return self.export
        except ObjectDoesNotExist:
            return None

    @property
    def is_final(self) -> bool:
        return self.status in {self.Status.SUCCEEDED, self.Status.FAILED}

    @property
    def wait_seconds(self) -> float | None:
        if self.started_at is None:
            return None
        return (self.started_at - self.queued_at).total_seconds()

    @property
    def run_seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def operating_rule(self) -> StudyRule | None:
        """The rule this result was made by: its thresholds (`malignant_threshold` for the study's
        suspicion, `slice_threshold` for a suspicious slice), from the model version's card."""
        version = self.model_version
        return _operating_rule(str(version.weights_path), version.sha256)

    @property
    def most_suspicious_first(self) -> list[SliceResult]:
        """The assessable slices' results, the most suspicious for malignancy first (prefetched)."""
        assessable = [r for r in self.slice_results.all() if r.assessable and r.p_malignant is not None]
        return sorted(assessable, key=lambda r: (-(r.p_malignant or 0.0), r.slice_id))

    @property
    def results_for_reading(self) -> list[SliceResult]:
        """Most suspicious first, then the slices that were not assessable, by position."""
        rest = [r for r in self.slice_results.all() if not r.assessable or r.p_malignant is None]
        return [*self.most_suspicious_first, *sorted(rest, key=lambda r: r.slice.position)]

    @classmethod
    def staleness_limits(cls) -> dict[str, tuple[str, timedelta]]:
        """The one staleness rule: how long an unfinished state may last, from which timestamp,
        before its work counts as lost (a message the broker dropped, a worker that died past the
        hard time limit)."""
        lost_after = timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT) + settings.PREDICTION_LOST_GRACE
        return {
            cls.Status.QUEUED: ("queued_at", settings.PREDICTION_REQUEUE_AFTER),
            cls.Status.RUNNING: ("started_at", lost_after),
        }

    @classmethod
    def stale_q(cls, now: datetime) -> Q:
        """Rows that `is_stale` would call stale at `now`, as a filter."""
        timed_out = reduce(
            operator.or_,
            (
                Q(status=status, **{f"{field}__lt": now - limit})
                for status, (field, limit) in cls.staleness_limits().items()
            ),
        )
        return timed_out | cls._worker_lost_q(now)

    @classmethod
    def _worker_lost_q(cls, now: datetime) -> Q:
        """Running on a named worker that has stopped heartbeating, or was restarted since the run
        began (same name, new boot): the run died with it."""
        since = now - settings.WORKER_LOST_AFTER
        alive = WorkerHeartbeat.objects.filter(
            Q(booted_at__isnull=True) | Q(booted_at__lte=OuterRef("started_at")),
            hostname=OuterRef("worker"),
            last_seen__gte=since,
        )
        return Q(status=cls.Status.RUNNING, started_at__lt=since) & ~Q(worker="") & Q(~Exists(alive))

    @property
    def is_stale(self) -> bool:
        """Queued or running for longer than any healthy run takes, or running on a worker that
        stopped heartbeating: the work was lost."""
        rule = self.staleness_limits().get(self.status)
        if rule is None:
            return False
        field, limit = rule
        since = getattr(self, field)
        if since is not None and timezone.now() - since > limit:
            return True
        return bool(self.status == self.Status.RUNNING and self.worker) and (
            Prediction.objects.filter(self._worker_lost_q(timezone.now()), pk=self.pk).exists()
        )


class SliceResult(Probabilities):
    prediction = models.ForeignKey(Prediction, on_delete=models.PROTECT, related_name="slice_results")
    slice = models.ForeignKey(Slice, on_delete=models.PROTECT, related_name="results")
    heatmap = models.FileField(max_length=200, blank=True)
    assessable = models.BooleanField(default=True)
    reason = models.CharField(max_length=300, blank=True, help_text="why the slice was not assessable")

    class Meta:
        ordering = ["slice__position"]
        constraints = [
            models.UniqueConstraint(fields=["prediction", "slice"], name="slice_result_once"),
        ]

    def __str__(self) -> str:
        return f"{self.label} for slice {self.slice_id}"

    @property
    def audit_patient_id(self) -> int:
        return self.prediction.scan.patient_id


class PredictionRun(models.Model):
    """An earlier attempt at a prediction, kept when it is re-run: its error and who asked."""

    prediction = models.ForeignKey(Prediction, on_delete=models.PROTECT, related_name="earlier_runs")
    status = models.CharField(max_length=16, choices=Prediction.Status.choices)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    task_id = models.CharField(max_length=255, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    queued_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    rerun_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    rerun_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-rerun_at", "-id"]

    def __str__(self) -> str:
        return f"Earlier {self.status} run of prediction {self.prediction_id}"

    @property
    def audit_patient_id(self) -> int:
        return self.prediction.scan.patient_id
