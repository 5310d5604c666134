"""A clinician's agreement with, or correction of, a finished prediction.

Reviews are immutable: a correction is a new review that supersedes the latest one, and both
stay in the record with who and when."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from audit import trail
from inference.preprocessing import CLASS_NAMES
from inference.study import MALIGNANT
from webhooks.events import emit

from ..models import Prediction, Review

NOT_MALIGNANT = tuple(name for name in CLASS_NAMES if name != MALIGNANT)


def review_submit(
    *,
    prediction: Prediction,
    reviewer: User,
    verdict: str,
    label: str = "",
    comment: str = "",
    supersedes: int | None = None,
) -> Review:
    """Record a clinician's agreement with, or correction of, a finished prediction; with
    `supersedes` (a review's id), a correction of that review."""
    if prediction.status != Prediction.Status.SUCCEEDED:
        raise ValidationError("Only a succeeded prediction can be reviewed.")
    if not prediction.has_result:
        raise ValidationError(
            "No slice of this study could be assessed, so there is no AI result to agree with or correct."
        )
    label = _reviewed_label(prediction, verdict, label)
    review = Review(
        prediction=prediction,
        reviewer=reviewer,
        verdict=verdict,
        label=label,
        comment=comment.strip(),
        supersedes=_correctable(prediction, supersedes),
    )
    review.full_clean(validate_constraints=False)  # the database checks them, race-free
    try:
        with transaction.atomic():
            review.save()
            trail.record_object(
                trail.Action.REVIEW,
                review,
                user=reviewer,
                changes={"label": [review.supersedes.label if review.supersedes else None, label]},
                detail=f"corrects review {supersedes}"
                if supersedes
                else f"{verdict} on prediction {prediction.pk}",
            )
            emit(
                "review.amended" if review.supersedes_id else "review.signed",
                team=prediction.scan.patient.team,
                subject=review,
            )
    except IntegrityError:  # a double submit, or two corrections of the same review
        if supersedes:
            raise ValidationError(
                {"supersedes": ["That review has just been corrected; reload and correct the latest one."]}
            ) from None
        raise ValidationError(
            "You have already reviewed this prediction; correct your review instead."
        ) from None
    return review


def verdict_for(prediction: Prediction, label: str) -> str:
    """Agree when the reading's label is the AI's (or, where the AI said "not malignant", benign
    or normal); disagree otherwise."""
    agrees = label == prediction.label if prediction.label else label in NOT_MALIGNANT
    return Review.Verdict.AGREE if agrees else Review.Verdict.DISAGREE


def _correctable(prediction: Prediction, review_id: int | None) -> Review | None:
    """The review a correction supersedes: one of this prediction's, not corrected already."""
    if review_id is None:
        return None
    review = prediction.reviews.filter(pk=review_id).select_related("superseded_by").first()
    if review is None:
        raise ValidationError({"supersedes": [f"Review {review_id} is not a review of this prediction."]})
    if not review.is_current:
        raise ValidationError(
            {"supersedes": [f"Review {review_id} was corrected already; correct the latest review instead."]}
        )
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
