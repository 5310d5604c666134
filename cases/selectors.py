"""Everything that reads for a user. Team scoping is enforced here, for HTML and API alike:
a clinician sees only the patients of their care teams, and anything else does not exist."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar

from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied
from django.db.models import (
    Case,
    CharField,
    Count,
    Exists,
    F,
    IntegerField,
    Model,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.expressions import BaseExpression
from django.db.models.functions import Coalesce
from django.db.models.query import ModelIterable
from django.http import Http404

from audit import trail

from .models import (
    LABEL_CHOICES,
    Addendum,
    CareTeam,
    Patient,
    Prediction,
    PredictionRun,
    Review,
    Scan,
    Slice,
    SliceResult,
    Study,
    current_report,
    with_report_label,
)

Viewer = User | AnonymousUser
PatientT = TypeVar("PatientT", bound=Patient)
ModelT = TypeVar("ModelT", bound=Model)

# How each record reaches its patient: for telling a refused look at an existing object from a miss.
PATIENT_PATHS: dict[type[Model], str] = {
    Patient: "pk",
    Study: "patient_id",
    Scan: "patient_id",
    Slice: "scan__patient_id",
    Prediction: "scan__patient_id",
    SliceResult: "prediction__scan__patient_id",
    Review: "prediction__scan__patient_id",
    Addendum: "report__study__patient_id",
}


def signed_in(user: Viewer) -> User:
    """The user behind a login-required page or an authenticated API call, as a User."""
    if not user.is_authenticated:  # unreachable behind login_required / IsAuthenticated
        raise PermissionDenied("Log in first.")
    return user


def teams_for(user: Viewer) -> QuerySet[CareTeam]:
    if not user.is_authenticated or not user.is_active:
        return CareTeam.objects.none()
    return CareTeam.objects.filter(members__pk=user.pk)


def patients_for(user: Viewer) -> QuerySet[Patient]:
    return Patient.objects.filter(team__in=teams_for(user)).select_related("team")


# A patient's studies, the latest first: the patient page's order, and which study is "latest".
STUDY_ORDER = (F("study_date").desc(), F("study_time").desc(nulls_last=True), "-created_at", "-id")

# What a patient's latest result can be (the patient list's filter): a signed reading's label
# (any class), else what the AI said of the study, unread. The shipped rule never says benign or
# normal unless it can tell them apart, so "not malignant" is the AI's usual negative.
RESULT_CHOICES = [
    *LABEL_CHOICES,
    ("not_malignant", "AI: not malignant"),
    ("not_assessable", "AI: not assessable"),
]


def current_reading(study: Study | int | OuterRef) -> QuerySet[Review]:
    """A study's current reading: its signed report, or the latest correction of it (a second
    opinion is never the reading). `study` is a Study, its id, or an OuterRef to one: the one place
    that says which review the patient list treats as the authority."""
    return current_report(study)


def _study_ai_result(study: Study | int | OuterRef) -> QuerySet[Any]:  # Prediction, annotated
    """The prediction a clinician reads for a study (the newest succeeded one, else the newest: a
    rerun in the queue does not hide a result, as on the worklist), with `ai_result`: its label,
    "not_malignant" (no label: benign and normal not told apart), "not_assessable", or its state."""
    return (
        Prediction.objects.filter(Q(scan__study=study))
        .annotate(
            pending=Case(When(status=Prediction.Status.SUCCEEDED, then=Value(0)), default=Value(1)),
            ai_result=Case(
                When(~Q(status=Prediction.Status.SUCCEEDED), then=F("status")),
                When(~Q(label=""), then=F("label")),
                When(suspicion__isnull=True, then=Value("not_assessable")),
                default=Value("not_malignant"),
                output_field=CharField(),
            ),
        )
        .order_by("pending", "-created_at", "-id")
    )


def _latest_study_id() -> Subquery:
    latest = Study.objects.filter(patient=OuterRef("pk")).order_by(*STUDY_ORDER)
    return Subquery(latest.values("pk")[:1], output_field=IntegerField())


def _latest_result() -> Coalesce:
    """The authoritative result of the latest study (its annotation `latest_study_id` first):
    the current reading's label where it is signed, else the AI's result."""
    study = OuterRef("latest_study_id")
    return Coalesce(
        Subquery(current_reading(study).values("label")[:1]),
        Subquery(_study_ai_result(study).values("ai_result")[:1]),
        output_field=CharField(),
    )


def _latest_columns() -> dict[str, BaseExpression]:
    """The patient list's columns of the latest study (`latest_study_id` annotated first): its AI
    result (state, label, result, prediction, time) and its current reading (label, amended, time)."""
    study = OuterRef("latest_study_id")
    ai = _study_ai_result(study)
    reading = current_reading(study)
    return {
        "latest_result": _latest_result(),
        "latest_status": Subquery(ai.values("status")[:1]),
        "latest_label": Subquery(ai.values("label")[:1]),
        "latest_ai_result": Subquery(ai.values("ai_result")[:1]),
        "latest_prediction_id": Subquery(ai.values("pk")[:1]),
        "latest_at": Subquery(ai.values("created_at")[:1]),
        "latest_reading_label": Subquery(reading.values("label")[:1]),
        "latest_reading_amended": Exists(reading.filter(supersedes__isnull=False)),
        "latest_read_at": Subquery(reading.values("created_at")[:1]),
    }


class _WithLatestResult(ModelIterable):  # (not subscriptable at run time)
    """Patients as fetched (a page: sliced, ordered), then their latest study's columns in one
    query for just those patients. As annotations of the list itself, PostgreSQL computed them
    for every patient the ordered index scan passed, those OFFSET skips included: a late page cost
    in proportion to its number."""

    def __iter__(self) -> Iterator[Patient]:
        patients = list(super().__iter__())
        columns = _latest_columns()
        pks = [patient.pk for patient in patients]
        rows = (
            Patient.objects.filter(pk__in=pks)
            .order_by()
            .annotate(latest_study_id=_latest_study_id())
            .annotate(**columns)
            .values_list("pk", "latest_study_id", *columns)
        )
        names = ["latest_study_id", *columns]
        found = {row[0]: row[1:] for row in rows} if pks else {}
        for patient in patients:
            values = found.get(patient.pk, (None,) * len(names))
            for name, value in zip(names, values, strict=True):
                setattr(patient, name, value)
            yield patient


def patients_with_latest_result(user: Viewer, *, query: str = "", result: str = "") -> QuerySet[Patient]:
    """The viewer's patients by name, each with its latest study's result: the current reading
    where a clinician signed one (`latest_reading_label`), else the AI's (`latest_status`,
    `latest_label`, `latest_ai_result`), and `latest_result`, the one of them that counts.
    `latest_result` and `latest_label` can also be filtered on (`result` filters the former):
    they are aliases, computed only when filtered by."""
    patients = (
        patients_for(user)
        .alias(latest_study_id=_latest_study_id())
        .alias(
            latest_result=_latest_result(),
            latest_label=Subquery(_study_ai_result(OuterRef("latest_study_id")).values("label")[:1]),
        )
    )
    if query:
        patients = patients_search(patients, query)
    if result:
        patients = patients.filter(latest_result=result)
    patients = patients.order_by("name", "id")
    patients._iterable_class = _WithLatestResult
    return patients


def patients_search(patients: QuerySet[PatientT], query: str) -> QuerySet[PatientT]:
    query = query.replace("\x00", "")  # PostgreSQL text cannot hold NUL; nothing matches one anyway
    return patients.filter(Q(mrn__icontains=query) | Q(name__icontains=query))


def scoped_get(user: Viewer, queryset: QuerySet[ModelT], pk: object) -> ModelT:
    """The object if the viewer may see it; else 404, and a refused look at an existing record
    goes into the audit trail."""
    try:
        return queryset.get(pk=pk)
    except (ObjectDoesNotExist, ValueError, TypeError):
        refused_if_exists(user, queryset.model, pk)
        raise Http404(f"No {queryset.model._meta.verbose_name} matches the given query.") from None


def refused_if_exists(user: Viewer, model: type[Model], pk: object) -> None:
    """Record a refusal when the object exists and its patient is outside the viewer's teams
    (a miss inside them, e.g. a heatmap never made, is just a 404)."""
    path = PATIENT_PATHS.get(model)
    if path is None or not isinstance(pk, int | str) or not str(pk).isdigit():
        return
    patient_id = model._default_manager.filter(pk=pk).values_list(path, flat=True).first()
    if patient_id is not None and not patients_for(user).filter(pk=patient_id).exists():
        trail.refused(model, int(pk), patient_id=patient_id)


def patient_get(user: Viewer, pk: int) -> Patient:
    return scoped_get(user, patients_for(user), pk)


def scans_for(user: Viewer) -> QuerySet[Scan]:
    return Scan.objects.filter(patient__in=patients_for(user)).select_related("patient", "patient__team")


def studies_for(user: Viewer) -> QuerySet[Study]:
    """The viewer's teams' studies, each with its series (and their slice counts) in one more query."""
    # A subquery, not Count("slices"): an aggregate would GROUP BY every column of the scan
    slices = Slice.objects.filter(scan=OuterRef("pk")).order_by().values("scan").annotate(n=Count("pk"))
    series = Scan.objects.annotate(slice_count=Coalesce(Subquery(slices.values("n")), 0)).order_by(
        "series_number", "created_at", "id"
    )
    return (
        Study.objects.filter(patient__in=patients_for(user))
        .select_related("patient", "patient__team")
        .prefetch_related(Prefetch("series", queryset=series))
    )


def predictions_for(user: Viewer) -> QuerySet[Prediction]:
    return Prediction.objects.filter(scan__patient__in=patients_for(user)).select_related(
        "scan", "scan__patient", "model_version"
    )


def _addenda() -> Prefetch:
    return Prefetch("addenda", queryset=Addendum.objects.select_related("author"))


def _reviews() -> Prefetch:
    """A prediction's readings, each with its addenda and its study's current report's label
    (what `Review.disagrees_with_report` reads)."""
    reviews = with_report_label(Review.objects.select_related("reviewer", "superseded_by"))
    return Prefetch("reviews", queryset=reviews.prefetch_related(_addenda()))


def study_get(user: Viewer, pk: int) -> Study:
    return scoped_get(
        user, Study.objects.filter(patient__in=patients_for(user)).select_related("patient"), pk
    )


def study_readings(study: Study | int) -> list[Review]:
    """A study's readings, whichever of its AI results they were signed on: the report's versions
    first, then second opinions, the newest first, each with its addenda (two queries). The
    study is the caller's, already scoped."""
    reviews = with_report_label(
        Review.objects.filter(study=study).select_related("reviewer", "superseded_by", "prediction")
    )
    return list(reviews.prefetch_related(_addenda()).order_by("kind", "-created_at", "-id"))


def report_of(readings: list[Review]) -> Review | None:
    """The study's current report among its readings (`study_readings`), if it has one."""
    return next((r for r in readings if r.is_report and r.is_current), None)


def _predictions_with_results() -> QuerySet[Prediction]:
    return Prediction.objects.select_related("model_version").prefetch_related(
        Prefetch("slice_results", queryset=SliceResult.objects.select_related("slice")), _reviews()
    )


def scans_detailed(user: Viewer) -> QuerySet[Scan]:
    return (
        scans_for(user)
        .select_related("study")
        .prefetch_related("slices", Prefetch("predictions", queryset=_predictions_with_results()))
    )


def predictions_detailed(user: Viewer) -> QuerySet[Prediction]:
    return predictions_for(user).prefetch_related(
        Prefetch("slice_results", queryset=SliceResult.objects.select_related("slice")),
        _reviews(),
        Prefetch("earlier_runs", queryset=PredictionRun.objects.select_related("requested_by", "rerun_by")),
    )


def scan_get(user: Viewer, pk: int) -> Scan:
    return scoped_get(user, scans_detailed(user), pk)


def prediction_get(user: Viewer, pk: int) -> Prediction:
    return scoped_get(user, predictions_detailed(user), pk)


def slice_get(user: Viewer, pk: int) -> Slice:
    return scoped_get(user, Slice.objects.filter(scan__in=scans_for(user)).select_related("scan"), pk)


def slice_result_get(user: Viewer, pk: int) -> SliceResult:
    results = SliceResult.objects.filter(prediction__in=predictions_for(user)).exclude(heatmap="")
    return scoped_get(user, results.select_related("prediction__scan"), pk)


def predictions_status(user: Viewer, ids: list[int]) -> QuerySet[Prediction]:
    return predictions_for(user).filter(pk__in=ids)


def patient_studies(user: Viewer, patient: Patient) -> list[Scan]:
    """A patient's series (scans), the latest study date first, each with its slices, predictions
    and readings prefetched (three queries beside the scans'): what two studies are compared by."""
    predictions = Prediction.objects.select_related("model_version").prefetch_related(_reviews())
    return list(
        scans_for(user)
        .filter(patient=patient)
        .prefetch_related("slices", Prefetch("predictions", queryset=predictions))
        .order_by("-study_date", "-created_at", "-id")
    )


# The patient page's and the history API's page: 20 studies, each with all its series.
HISTORY_STUDIES_PER_PAGE = 20


def _slice_count() -> Subquery:
    # A subquery, not Count("slices"): an aggregate would GROUP BY every column of the series.
    slices = Slice.objects.filter(scan=OuterRef("pk")).order_by().values("scan").annotate(count=Count("pk"))
    return Subquery(slices.values("count"), output_field=IntegerField())


def patient_history(user: Viewer, patient: Patient, *, thumbnails: int = 0) -> QuerySet[Study]:
    """A patient's studies, the latest study date (and time) first, to be paged: under each its
    series, and under each series its predictions and their readings, newest first. A series
    carries `slice_count` and, given `thumbnails`, its first slices as `thumbnail_slices`. A page
    costs the same number of queries whatever its studies hold (one per level, and the count)."""
    predictions = Prediction.objects.select_related("model_version").prefetch_related(_reviews())
    series = (
        Scan.objects.annotate(slice_count=_slice_count())
        .order_by("-created_at", "-id")
        .prefetch_related(Prefetch("predictions", queryset=predictions))
    )
    if thumbnails:
        first_slices = Slice.objects.filter(position__lt=thumbnails).order_by("position")
        series = series.prefetch_related(
            Prefetch("slices", queryset=first_slices, to_attr="thumbnail_slices")
        )
    return (
        Study.objects.filter(patient__in=patients_for(user), patient=patient)
        .prefetch_related(Prefetch("series", queryset=series))
        .order_by(*STUDY_ORDER)
    )
