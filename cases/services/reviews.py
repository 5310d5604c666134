"""A clinician's reading of a study: its one signed report, corrections of it, addenda to it, and
other readers' second opinions.

Readings are immutable: a correction is a new review that supersedes the latest one, and both
stay in the record with who and when; text added after signing is an addendum. A study has one
report: a second signature is refused with a `ReportConflict` naming who signed, whether it comes
after the first or at the same instant (the database's constraint decides the race)."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit import trail
from inference.preprocessing import CLASS_NAMES
from inference.study import MALIGNANT

from ..events import REVIEW_AMENDED, REVIEW_SIGNED, publish
from ..models import Addendum, Prediction, Review, Study, current_report

NOT_MALIGNANT = tuple(name for name in CLASS_NAMES if name != MALIGNANT)


class ReportConflict(ValidationError):
    """The study's report is already signed by someone else: a second signature is refused (the
    API answers 409)."""

    def __init__(self, report: Review) -> None:
        signed = timezone.localtime(report.created_at)
        super().__init__(
            f"Final report already signed by {report.reviewer.get_username()} on {signed:%Y-%m-%d %H:%M}; "
            "add an addendum or record a second opinion.",
            code="conflict",
        )
        self.report = report


ALREADY_REVIEWED = "You have already reviewed this study; correct your review instead."


def review_submit(
    *,
    prediction: Prediction,
    reviewer: User,
    verdict: str,
    label: str = "",
    comment: str = "",
    supersedes: int | None = None,
    kind: str = Review.Kind.REPORT,
) -> Review:
    """Sign the study's report (`kind` report), or record a second opinion, on a finished
    prediction of the study; with `supersedes` (a review's id), a correction of that reading, of
    its kind. A report where the study has one already is a `ReportConflict`."""
    if prediction.status != Prediction.Status.SUCCEEDED:
        raise ValidationError("Only a succeeded prediction can be reviewed.")
    if not prediction.has_result:
        raise ValidationError(
            "No slice of this study could be assessed, so there is no AI result to agree with or correct."
        )
    if kind not in Review.Kind.values:
        raise ValidationError({"kind": [f"A reading is a report or a second opinion, not {kind!r}."]})
    label = _reviewed_label(prediction, verdict, label)
    study = prediction.scan.study
    corrected = _correctable(study, supersedes)
    if corrected is None:
        _refuse_a_second_original(study, reviewer, kind)
    review = Review(
        prediction=prediction,
        study=study,
        kind=corrected.kind if corrected else kind,
        reviewer=reviewer,
        verdict=verdict,
        label=label,
        comment=comment.strip(),
        supersedes=corrected,
    )
    review.full_clean(validate_constraints=False)  # the database checks them, race-free
    try:
        with transaction.atomic():
            review.save()
            trail.record_object(
                trail.Action.REVIEW,
                review,
                user=reviewer,
                changes={"label": [corrected.label if corrected else None, label]},
                detail=f"corrects review {supersedes}"
                if supersedes
                else f"{review.get_kind_display().lower()}: {verdict} on prediction {prediction.pk}",
            )
            if review.is_report:  # the study's reading; a second opinion is not published as one
                publish(
                    REVIEW_AMENDED if review.supersedes_id else REVIEW_SIGNED,
                    team=prediction.scan.patient.team,
                    subject=review,
                )
    except IntegrityError:  # a double submit, two corrections of one review, or two signatures at once
        if supersedes:
            raise ValidationError(
                {"supersedes": ["That review has just been corrected; reload and correct the latest one."]}
            ) from None
        _refuse_a_second_original(study, reviewer, kind)
        raise ValidationError(ALREADY_REVIEWED) from None
    return review


def addendum_add(*, study: Study, author: User, text: str) -> Addendum:
    """Append text to the study's signed report (its current version): timestamped, never edited."""
    text = text.strip()
    if not text:
        raise ValidationError({"text": ["Write the addendum's text."]})
    report = current_report(study).select_related("study").first()
    if report is None:
        raise ValidationError(
            "This study has no signed report yet: an addendum is added to a signed report. Sign the report."
        )
    addendum = Addendum(report=report, author=author, text=text)
    addendum.full_clean()
    with transaction.atomic():
        addendum.save()
        trail.record_object(
            trail.Action.CREATE,
            addendum,
            user=author,
            detail=f"addendum to report {report.pk} of study {study.pk}",
        )
    return addendum


def verdict_for(prediction: Prediction, label: str) -> str:
    """Agree when the reading's label is the AI's (or, where the AI said "not malignant", benign
    or normal); disagree otherwise."""
    agrees = label == prediction.label if prediction.label else label in NOT_MALIGNANT
    return Review.Verdict.AGREE if agrees else Review.Verdict.DISAGREE


def _refuse_a_second_original(study: Study, reviewer: User, kind: str) -> None:
    """A reader has one reading of a study (corrected, never repeated), and the study one report."""
    current = list(
        Review.objects.current().filter(study=study).select_related("reviewer").order_by("created_at", "id")
    )
    if any(r.reviewer_id == reviewer.pk for r in current):
        raise ValidationError(ALREADY_REVIEWED)
    report = next((r for r in current if r.kind == Review.Kind.REPORT), None)
    if kind == Review.Kind.REPORT and report is not None:
        raise ReportConflict(report)


def _correctable(study: Study, review_id: int | None) -> Review | None:
    """The reading a correction supersedes: one of this study's, not corrected already."""
    if review_id is None:
        return None
    review = study.reviews.filter(pk=review_id).select_related("superseded_by").first()
    if review is None:
        raise ValidationError({"supersedes": [f"Review {review_id} is not a review of this study."]})
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
