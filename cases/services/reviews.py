"""A clinician's agreement with, or correction of, a finished prediction."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError

from ..models import Prediction, Review


def review_submit(
    *, prediction: Prediction, reviewer: User, verdict: str, label: str = "", comment: str = ""
) -> Review:
    """Record a clinician's agreement with, or correction of, a finished prediction."""
    if prediction.status != Prediction.Status.SUCCEEDED:
        raise ValidationError("Only a succeeded prediction can be reviewed.")
    label = _reviewed_label(prediction, verdict, label)
    review = Review(
        prediction=prediction, reviewer=reviewer, verdict=verdict, label=label, comment=comment.strip()
    )
    review.full_clean()
    try:
        review.save()
    except IntegrityError:  # a double submit racing the check above
        raise ValidationError("You have already reviewed this prediction.") from None
    return review


def _reviewed_label(prediction: Prediction, verdict: str, label: str) -> str:
    """The label a verdict stands for: the model's when agreeing, a different one when not."""
    if verdict == Review.Verdict.AGREE:
        if label and label != prediction.label:
            raise ValidationError(
                {"label": [f"Agreeing means the label is {prediction.label}; choose disagree."]}
            )
        return prediction.label
    if verdict == Review.Verdict.DISAGREE:
        if not label:
            raise ValidationError({"label": ["Give the label you read when you disagree."]})
        if label == prediction.label:
            raise ValidationError({"label": ["That is the model's label: choose agree instead."]})
    return label
