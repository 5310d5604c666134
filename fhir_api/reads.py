"""One FHIR resource by its logical id, for a user: through `cases.selectors`, so that anything
outside the user's care teams is a 404 (and an existing record refused goes into the audit
trail), and so is a malformed or unknown id."""

from __future__ import annotations

import re
from collections.abc import Callable

from django.db.models import F, Model, Prefetch, QuerySet
from django.http import Http404

from cases import selectors
from cases.models import Prediction, Review, Scan, Slice, Study
from cases.selectors import Viewer
from inference.models import ModelVersion

from . import builders
from .builders import Resource

PK = "[0-9]{1,18}"  # fits a 64-bit key: a longer number is a miss, never a database error
PLAIN_ID = re.compile(rf"^({PK})$")
REPORT_ID = re.compile(rf"^(prediction|review)-({PK})$")
OBSERVATION_ID = re.compile(rf"^prediction-({PK})-({'|'.join(builders.OBSERVATION_KINDS)})$")


def studies_with_series(user: Viewer) -> QuerySet[Study]:
    """The user's studies with their series and the slice columns an ImagingStudy shows, in two
    more queries whatever their number."""
    columns = ("id", "scan_id", "position", "sop_instance_uid", "sop_class_uid", "instance_number")
    # Slice's Meta orders by position already: instances in series order.
    slices = Prefetch("slices", queryset=Slice.objects.only(*columns))
    series = Scan.objects.order_by(F("series_number").asc(nulls_last=True), "created_at", "id")
    # The selector's own prefetches give way to what FHIR shows.
    studies = selectors.studies_for(user).prefetch_related(None)
    return studies.prefetch_related(Prefetch("series", queryset=series.prefetch_related(slices)))


def reports_for(user: Viewer) -> QuerySet[Prediction]:
    """Finished predictions, with what their reports and observations show."""
    return selectors.predictions_for(user).filter(status=Prediction.Status.SUCCEEDED)


def reviews_for(user: Viewer) -> QuerySet[Review]:
    """Signed reports on the user's patients' studies (a second opinion is no report of record)."""
    return (
        Review.objects.reports()
        .filter(prediction__in=selectors.predictions_for(user))
        .select_related("reviewer", "prediction__scan__patient", "prediction__model_version")
    )


def read(user: Viewer, resource_type: str, logical_id: str) -> tuple[Resource, Model | None]:
    """The resource, and the record whose reading goes into the audit trail (None: not clinical)."""
    return READERS[resource_type](user, logical_id)


def _pk(pattern: re.Pattern[str], logical_id: str) -> re.Match[str]:
    match = pattern.match(logical_id)
    if match is None:
        raise Http404("No resource has this id.")
    return match


def _patient(user: Viewer, logical_id: str) -> tuple[Resource, Model | None]:
    patient = selectors.patient_get(user, int(_pk(PLAIN_ID, logical_id)[1]))
    return builders.patient_resource(patient), patient


def _imaging_study(user: Viewer, logical_id: str) -> tuple[Resource, Model | None]:
    study = selectors.scoped_get(user, studies_with_series(user), int(_pk(PLAIN_ID, logical_id)[1]))
    return builders.imaging_study_resource(study), study


def _diagnostic_report(user: Viewer, logical_id: str) -> tuple[Resource, Model | None]:
    kind, pk = _pk(REPORT_ID, logical_id).groups()
    if kind == "prediction":
        prediction = selectors.scoped_get(user, reports_for(user), int(pk))
        return builders.prediction_report(prediction), prediction
    review = selectors.scoped_get(user, reviews_for(user), int(pk))
    return builders.review_report(review), review


def _observation(user: Viewer, logical_id: str) -> tuple[Resource, Model | None]:
    pk, kind = _pk(OBSERVATION_ID, logical_id).groups()
    prediction = selectors.scoped_get(user, reports_for(user), int(pk))
    if kind not in builders.observation_kinds(prediction):
        raise Http404("This prediction has no such observation.")
    return builders.observation_resource(prediction, kind), prediction


def _device(user: Viewer, logical_id: str) -> tuple[Resource, Model | None]:
    # Model versions are the portal's, not a care team's: every signed-in user may read them.
    version = ModelVersion.objects.filter(pk=int(_pk(PLAIN_ID, logical_id)[1])).first()
    if version is None:
        raise Http404("No model version has this id.")
    return builders.device_resource(version), None


READERS: dict[str, Callable[[Viewer, str], tuple[Resource, Model | None]]] = {
    "Patient": _patient,
    "ImagingStudy": _imaging_study,
    "DiagnosticReport": _diagnostic_report,
    "Observation": _observation,
    "Device": _device,
}
RESOURCE_TYPES = tuple(READERS)
