"""A clinician's reading of a prediction."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from .predictions import Prediction
from .records import LABEL_CHOICES


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
        indexes = [
            # A prediction's current reading, the newest first (the worklist's reading columns).
            models.Index(
                "prediction", F("created_at").desc(), F("id").desc(), name="review_prediction_latest"
            ),
        ]
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
