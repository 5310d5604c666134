"""A clinician's agreement with, or correction of, a finished prediction."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError

from inference.preprocessing import CLASS_NAMES
from inference.study import MALIGNANT

from ..models import Prediction, Review

NOT_MALIGNANT = tuple(name for name in CLASS_NAMES if name != MALIGNANT)


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
    """The label a verdict stands for: the model's when agreeing, a different one when not.

    Where the model gave no label (not malignant, benign and normal not told apart), agreeing
    means not malignant and the reviewer says which; disagreeing means malignant."""
    if not prediction.label:
        return _reviewed_unlabelled(verdict, label)
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


def _reviewed_unlabelled(verdict: str, label: str) -> str:
    if verdict == Review.Verdict.AGREE:
        if label not in NOT_MALIGNANT:
            raise ValidationError(
                {"label": ["The model found no sign of malignancy: say whether you read benign or normal."]}
            )
        return label
    if verdict == Review.Verdict.DISAGREE and label and label != MALIGNANT:
        raise ValidationError({"label": ["Disagreeing with 'not malignant' means malignant; choose agree."]})
    return MALIGNANT if verdict == Review.Verdict.DISAGREE else label
