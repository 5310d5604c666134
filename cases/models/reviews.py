"""A clinician's reading of a study: its one signed report (corrected by a new version that
supersedes it, added to by addenda), and other readers' second opinions."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Exists, F, OuterRef, Q, Subquery
from django.utils import timezone

from .predictions import Prediction
from .records import LABEL_CHOICES, Study


class ReviewQuerySet(models.QuerySet["Review"]):
    def current(self) -> ReviewQuerySet:
        """Not corrected by a later version."""
        return self.filter(superseded_by__isnull=True)

    def reports(self) -> ReviewQuerySet:
        return self.filter(kind=Review.Kind.REPORT)

    def second_opinions(self) -> ReviewQuerySet:
        return self.filter(kind=Review.Kind.SECOND_OPINION)


class Review(models.Model):
    """A clinician's reading of a study, signed on the AI result they read it beside.

    A study has at most one original *report* (the database says so); a correction of it is a new
    version that `supersedes` it (the study's reading is then "amended"), and later text is an
    `Addendum`. Another reader's reading is a *second opinion*: its own record, never the report.
    Immutable: a correction is a new review that supersedes this one."""

    class Verdict(models.TextChoices):
        AGREE = "agree", "Agree"
        DISAGREE = "disagree", "Disagree"

    class Kind(models.TextChoices):
        REPORT = "report", "Report"
        SECOND_OPINION = "second_opinion", "Second opinion"

    prediction = models.ForeignKey(Prediction, on_delete=models.PROTECT, related_name="reviews")
    # The prediction's scan's study, kept here so that the database can hold "one report per
    # study" (and the worklist find a study's report without joining through its series).
    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="reviews", db_index=False)
    kind = models.CharField(
        max_length=16,
        choices=Kind.choices,
        default=Kind.REPORT,
        help_text="the study's signed report, or another reader's second opinion",
    )
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

    objects = ReviewQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # A prediction's current reading, the newest first (the worklist's reading columns).
            models.Index(
                "prediction", F("created_at").desc(), F("id").desc(), name="review_prediction_latest"
            ),
            # A study's readings, the newest first: its report and second opinions.
            models.Index("study", "kind", F("created_at").desc(), F("id").desc(), name="review_study_latest"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["prediction", "reviewer"],
                condition=Q(supersedes__isnull=True),
                name="review_once_per_reviewer",
                violation_error_message="You have already reviewed this prediction; correct your review.",
            ),
            # One signed report per study: a second signature, even at the same instant, is refused
            # (corrections of it supersede, and are not originals).
            models.UniqueConstraint(
                fields=["study"],
                condition=Q(kind="report", supersedes__isnull=True),
                name="report_once_per_study",
                violation_error_message="This study's report is already signed.",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=["report", "second_opinion"]), name="review_kind_valid"
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

    @property
    def is_report(self) -> bool:
        return self.kind == self.Kind.REPORT

    @property
    def reading_state(self) -> str:
        """The study's reading state this report gives (the worklist's `reading`, in Python):
        amended once corrected, addended once text was added to it, else final."""
        if self.supersedes_id:
            return "amended"
        return "addended" if self.addenda.all() else "final"

    @property
    def disagrees_with_report(self) -> bool:
        """A current second opinion whose label is not the study's current report's (read from
        the `report_label` annotation of `with_report_label`; False without it)."""
        report_label = getattr(self, "report_label", None)
        return (
            self.kind == self.Kind.SECOND_OPINION
            and self.is_current
            and report_label is not None
            and self.label != report_label
        )


def current_report(study: Any) -> ReviewQuerySet:
    """The study's current report (at most one row): its original, or the latest correction of
    it. `study` is a Study, an id or an OuterRef."""
    return Review.objects.reports().current().filter(study=study).order_by("-created_at", "-id")


def with_report_label(reviews: models.QuerySet[Review]) -> models.QuerySet[Review]:
    """Each review with its study's current report's label as `report_label` (None without one)."""
    return reviews.annotate(report_label=Subquery(current_report(OuterRef("study_id")).values("label")[:1]))


def disagreement(study: Any) -> Exists:
    """Whether the study has a current second opinion whose label differs from its current
    report's: the one rule for "readers disagree", in SQL (worklist, agreement)."""
    return Exists(
        Review.objects.second_opinions()
        .current()
        .filter(study=study)
        .filter(~Q(label=Subquery(current_report(OuterRef("study_id")).values("label")[:1])))
    )


class Addendum(models.Model):
    """Text added to a signed report after signing: appended and timestamped, never edited or
    deleted (the report itself stays as it was signed)."""

    report = models.ForeignKey(Review, on_delete=models.PROTECT, related_name="addenda")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    text = models.TextField(max_length=4000)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name_plural = "addenda"

    def __str__(self) -> str:
        return f"Addendum {self.pk} to report {self.report_id}"

    def get_absolute_url(self) -> str:
        return self.report.prediction.get_absolute_url() + f"#addendum-{self.pk}"

    @property
    def audit_patient_id(self) -> int:
        return self.report.study.patient_id
