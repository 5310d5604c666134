"""The clinical record: care teams, patients, scans, slices and predictions."""

from __future__ import annotations

import operator
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from functools import reduce
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from inference.preprocessing import CLASS_NAMES, most_probable
from inference.study import RULE_SUMMARY

from .validators import plausible_date

LABEL_CHOICES = [(name, name.capitalize()) for name in CLASS_NAMES]


class CareTeam(models.Model):
    name = models.CharField(max_length=100, unique=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="care_teams", blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Patient(models.Model):
    class Sex(models.TextChoices):
        FEMALE = "F", "Female"
        MALE = "M", "Male"
        OTHER = "O", "Other"
        UNKNOWN = "U", "Unknown"

    team = models.ForeignKey(CareTeam, on_delete=models.PROTECT, related_name="patients")
    mrn = models.CharField(
        "MRN",
        max_length=32,
        help_text="Medical record number: letters, digits, dot, dash or underscore.",
        validators=[RegexValidator(r"^[A-Za-z0-9._-]+$", "Use only letters, digits, '.', '-' and '_'.")],
    )
    name = models.CharField(max_length=200)
    birth_date = models.DateField(validators=[plausible_date])
    sex = models.CharField(max_length=1, choices=Sex.choices, default=Sex.UNKNOWN)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["team", "mrn"],
                name="patient_mrn_unique_per_team",
                violation_error_message="A patient with this MRN already exists in this care team.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.mrn})"

    def get_absolute_url(self) -> str:
        return reverse("cases:patient_detail", args=[self.pk])

    @property
    def audit_patient_id(self) -> int:
        return self.pk

    @property
    def age(self) -> int:
        today = date.today()
        before_birthday = (today.month, today.day) < (self.birth_date.month, self.birth_date.day)
        return today.year - self.birth_date.year - before_birthday


class Scan(models.Model):
    """A study: one or more CT slices uploaded together."""

    # PROTECT throughout the record: nothing clinical is erased by a cascade (see `purge_records`).
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="scans")
    study_date = models.DateField(default=date.today, validators=[plausible_date])
    note = models.TextField(blank=True, max_length=2000)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Scan {self.pk} of {self.study_date:%Y-%m-%d}"

    def get_absolute_url(self) -> str:
        return reverse("cases:scan_detail", args=[self.pk])

    def clean(self) -> None:
        patient = self.patient if self.patient_id else None
        if patient is not None and self.study_date and self.study_date < patient.birth_date:
            raise ValidationError(
                {"study_date": [f"The study date is before the patient's birth date ({patient.birth_date})."]}
            )

    @property
    def audit_patient_id(self) -> int:
        return self.patient_id


class Slice(models.Model):
    scan = models.ForeignKey(Scan, on_delete=models.PROTECT, related_name="slices")
    position = models.PositiveIntegerField()
    # Stored under a generated name; the client's name is kept for display only.
    image = models.FileField(max_length=200)
    thumbnail = models.FileField(max_length=200)
    original_name = models.CharField(max_length=255, blank=True)
    content_type = models.CharField(max_length=50)
    sha256 = models.CharField("SHA-256", max_length=64)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    size_bytes = models.PositiveIntegerField()

    class Meta:
        ordering = ["position"]
        constraints = [models.UniqueConstraint(fields=["scan", "position"], name="slice_position_unique")]

    def __str__(self) -> str:
        return f"Slice {self.position + 1} of scan {self.scan_id}"

    def get_absolute_url(self) -> str:
        return reverse("cases:slice_image", args=[self.pk])

    @property
    def audit_patient_id(self) -> int:
        return self.scan.patient_id


class Probabilities(models.Model):
    """Per-class probabilities shared by a prediction and its per-slice results."""

    label = models.CharField(max_length=16, blank=True, choices=LABEL_CHOICES)
    p_normal = models.FloatField(null=True, blank=True)
    p_benign = models.FloatField(null=True, blank=True)
    p_malignant = models.FloatField(null=True, blank=True)

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

    scan = models.ForeignKey(Scan, on_delete=models.PROTECT, related_name="predictions")
    model_version = models.ForeignKey(
        "inference.ModelVersion", on_delete=models.PROTECT, related_name="predictions"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    task_id = models.CharField(max_length=255, blank=True, help_text="Celery task that claimed the last run")
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
        return reduce(
            operator.or_,
            (
                Q(status=status, **{f"{field}__lt": now - limit})
                for status, (field, limit) in cls.staleness_limits().items()
            ),
        )

    @property
    def is_stale(self) -> bool:
        """Queued or running for longer than any healthy run takes: the work was lost."""
        rule = self.staleness_limits().get(self.status)
        if rule is None:
            return False
        field, limit = rule
        since = getattr(self, field)
        return since is not None and timezone.now() - since > limit


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


class Review(models.Model):
    """A clinician's reading of a finished prediction: the record of agreement or correction.

    Immutable: a correction is a new review that `supersedes` this one."""

    class Verdict(models.TextChoices):
        AGREE = "agree", "Agree"
        DISAGREE = "disagree", "Disagree"

    prediction = models.ForeignKey(Prediction, on_delete=models.PROTECT, related_name="reviews")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    verdict = models.CharField(max_length=16, choices=Verdict.choices)
    label = models.CharField(
        max_length=16,
        choices=LABEL_CHOICES,
        help_text="The reviewer's label: the model's when agreeing, the correction when not.",
    )
    comment = models.TextField(blank=True, max_length=2000)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # One-to-one: a review is corrected at most once, so corrections form a single line.
    supersedes = models.OneToOneField(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="superseded_by",
        help_text="the earlier review this one corrects",
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["prediction", "reviewer"],
                condition=Q(supersedes__isnull=True),
                name="review_once_per_reviewer",
                violation_error_message="You have already reviewed this prediction; correct your review.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_verdict_display()} ({self.label}) on prediction {self.prediction_id}"

    def get_absolute_url(self) -> str:
        return self.prediction.get_absolute_url() + f"#review-{self.pk}"

    @property
    def audit_patient_id(self) -> int:
        return self.prediction.scan.patient_id

    @property
    def is_current(self) -> bool:
        """Not corrected by a later review (read from the reverse one-to-one)."""
        try:
            self.superseded_by  # noqa: B018
        except Review.DoesNotExist:
            return True
        return False
