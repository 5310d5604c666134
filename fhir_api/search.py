"""FHIR searches: the parameters each resource type takes, read strictly (an unknown or malformed
parameter is a 400, not silently ignored: a clinician's typo must not widen a search), applied to
the user's scoped querysets, and one page of the result in a bounded number of queries.

Parameters (values may list alternatives separated by commas; a repeated parameter narrows):
- Patient: identifier ([system|]MRN), name (starts a word of the name; :contains, :exact)
- ImagingStudy: patient / subject (Patient/{id} or {id}), identifier (Study Instance UID as
  urn:dicom:uid|urn:oid:…, or the accession number), started / date (study date; eq ne gt lt ge le
  prefixes, YYYY, YYYY-MM or YYYY-MM-DD)
- DiagnosticReport: patient / subject, status (preliminary, final, amended), date (study date)
- Observation: patient / subject, code ([system|]code)
- Device: none
- all: _count (page size, at most FHIR_MAX_PAGE_SIZE), _offset (where the page starts)
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import reduce
from typing import TypeVar

from django.conf import settings
from django.db.models import F, IntegerField, Model, Q, QuerySet, Value
from django.db.models.functions import Coalesce
from django.http import QueryDict

from cases.selectors import Viewer, patients_for
from inference.models import ModelVersion
from inference.preprocessing import CLASS_NAMES

from . import builders, reads
from .builders import Resource

ModelT = TypeVar("ModelT", bound=Model)

MAX_PARAMETERS = 20
MAX_VALUE_LENGTH = 256
MAX_ALTERNATIVES = 20
MAX_OFFSET = 10**9
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
NAME = re.compile(r"^([A-Za-z_][A-Za-z0-9_.-]{0,63})(?::([A-Za-z-]{1,32}))?$")
PATIENT_REFERENCE = re.compile(r"^(?:(?:https?://\S+/)?Patient/)?([0-9]{1,18})$")
DATE = re.compile(
    r"^(eq|ne|gt|lt|ge|le|sa|eb|ap)?([0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2})"
    r"(?:T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,9})?)?(?:Z|[+-][0-9]{2}:[0-9]{2})?)?)?)?$"
)
FORMATS = {"json", "application/json", "application/fhir+json", "fhir+json"}
# Every DiagnosticReport status FHIR defines; the portal's reports are in the first three.
REPORT_STATUSES = {"preliminary", "final", "amended"}
OTHER_REPORT_STATUSES = {
    "registered",
    "partial",
    "corrected",
    "appended",
    "cancelled",
    "entered-in-error",
    "unknown",
}
OBSERVATION_CODES = {
    builders.observation_code(kind)["coding"][0]["code"]: kind for kind in builders.OBSERVATION_KINDS
}

PATIENT = {"patient": {""}, "subject": {""}}
PARAMETERS: dict[str, dict[str, set[str]]] = {
    "Patient": {"identifier": {""}, "name": {"", "contains", "exact"}},
    "ImagingStudy": {**PATIENT, "identifier": {""}, "started": {""}, "date": {""}},
    "DiagnosticReport": {**PATIENT, "status": {""}, "date": {""}},
    "Observation": {**PATIENT, "code": {""}},
    "Device": {},
}


class SearchError(Exception):
    """A search parameter the server cannot read: a 400 with an OperationOutcome."""

    def __init__(self, message: str, *, code: str = "invalid") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Parameter:
    name: str
    modifier: str
    value: str

    @property
    def alternatives(self) -> list[str]:
        values = self.value.split(",")
        if len(values) > MAX_ALTERNATIVES or not all(values):
            raise SearchError(f"{self.name}: give 1 to {MAX_ALTERNATIVES} values, separated by commas.")
        return values


@dataclass(frozen=True)
class Page:
    total: int
    resources: list[Resource]
    count: int
    offset: int
    parameters: list[tuple[str, str]]  # the search's own, as given: for the paging links


def search(user: Viewer, resource_type: str, query: QueryDict) -> Page:
    parameters, count, offset = parse(query, PARAMETERS[resource_type])
    total, found = SEARCHES[resource_type](user, parameters, slice(offset, offset + count))
    echo = [(f"{p.name}:{p.modifier}" if p.modifier else p.name, p.value) for p in parameters]
    return Page(total=total, resources=found, count=count, offset=offset, parameters=echo)


def parse(query: QueryDict, allowed: Mapping[str, set[str]]) -> tuple[list[Parameter], int, int]:
    """The search parameters, and the page's size and start; SearchError for anything else."""
    items = [(key, value) for key, values in query.lists() for value in values]
    if len(items) > MAX_PARAMETERS:
        raise SearchError(f"Give at most {MAX_PARAMETERS} search parameters.")
    parameters = [_parameter(key, value) for key, value in items]
    control = [p for p in parameters if p.name.startswith("_")]
    names = [p.name for p in control]
    if any(p.modifier for p in control) or len(set(names)) < len(names):
        raise SearchError("Give each of _count, _offset and _format once, without a modifier.")
    paging = {"_count": settings.FHIR_PAGE_SIZE, "_offset": 0}
    for parameter in control:
        if parameter.name in paging:
            maximum = settings.FHIR_MAX_PAGE_SIZE if parameter.name == "_count" else MAX_OFFSET
            paging[parameter.name] = _number(parameter.name, parameter.value, maximum)
        elif parameter.name != "_format" or parameter.value not in FORMATS:
            raise SearchError(
                f"{parameter.name}={_shown(parameter.value)} is not supported.", code="not-supported"
            )
    searched = [p for p in parameters if not p.name.startswith("_")]
    for parameter in searched:
        _check(parameter, allowed)
    return searched, paging["_count"], paging["_offset"]


def _parameter(key: str, value: str) -> Parameter:
    match = NAME.match(key)
    if match is None or CONTROL.search(value) or len(value) > MAX_VALUE_LENGTH:
        raise SearchError(f"Unreadable search parameter {_shown(key)}.")
    return Parameter(match[1], match[2] or "", value)


def _check(parameter: Parameter, allowed: Mapping[str, set[str]]) -> None:
    name, modifier = parameter.name, parameter.modifier
    if name not in allowed:
        known = ", ".join(sorted(allowed)) or "none"
        raise SearchError(
            f"Unknown search parameter {name!r}; this type takes: {known}.", code="not-supported"
        )
    if modifier not in allowed[name]:
        raise SearchError(f"{name} takes no modifier {modifier!r}.", code="not-supported")
    if not parameter.value:
        raise SearchError(f"{name} needs a value.")


def _number(name: str, value: str, maximum: int) -> int:
    if not re.fullmatch(r"[0-9]{1,10}", value) or int(value) > maximum:
        raise SearchError(f"{name} must be a whole number from 0 to {maximum}.")
    return int(value)


def _shown(text: str) -> str:
    return repr(CONTROL.sub("?", text[:40]))


# --- values -------------------------------------------------------------------------------------


def _any(values: Iterable[str], one: Callable[[str], Q]) -> Q:
    return reduce(lambda a, b: a | b, (one(value) for value in values))


def _nothing() -> Q:
    return Q(pk__in=[])


def _token(value: str) -> tuple[str | None, str]:
    """`system|code` (an empty system: none), or a bare code (any system)."""
    if "|" not in value:
        return None, value
    system, _, code = value.partition("|")
    if not code:
        raise SearchError(f"{_shown(value)}: give a code after the '|'.")
    return system, code


def patient_q(path: str, parameter: Parameter) -> Q:
    def one(value: str) -> Q:
        match = PATIENT_REFERENCE.match(value)
        if match is None:
            raise SearchError(f"{parameter.name}: {_shown(value)} is not a patient's id (Patient/123).")
        return Q(**{path: int(match[1])})

    return _any(parameter.alternatives, one)


def date_q(path: str, parameter: Parameter) -> Q:
    """A day-precise date (the study date) against a date, a month or a year, with FHIR's prefixes."""

    def one(value: str) -> Q:
        match = DATE.match(value)
        if match is None:
            raise SearchError(
                f"{parameter.name}: {_shown(value)} is not a date (YYYY-MM-DD, with ge, le, …)."
            )
        prefix, year, month, day = match[1] or "eq", int(match[2]), match[3], match[4]
        if prefix in {"sa", "eb", "ap"}:
            raise SearchError(
                f"{parameter.name}: the prefix {prefix} is not supported.", code="not-supported"
            )
        try:
            start = dt.date(year, int(month or 1), int(day or 1))
            end = dt.date(
                year, int(month or 12), int(day) if day else calendar.monthrange(year, int(month or 12))[1]
            )
        except ValueError:
            raise SearchError(f"{parameter.name}: {_shown(value)} is not a date.") from None
        within = Q(**{f"{path}__gte": start, f"{path}__lte": end})
        return {
            "eq": within,
            "ne": ~within,
            "gt": Q(**{f"{path}__gt": end}),
            "lt": Q(**{f"{path}__lt": start}),
            "ge": Q(**{f"{path}__gte": start}),
            "le": Q(**{f"{path}__lte": end}),
        }[prefix]

    return _any(parameter.alternatives, one)


def _page(queryset: QuerySet[ModelT], page: slice) -> tuple[int, list[ModelT]]:
    total = queryset.count()
    return total, (list(queryset[page]) if page.stop > page.start and page.start < total else [])


# --- each type ----------------------------------------------------------------------------------


def _patients(user: Viewer, parameters: list[Parameter], page: slice) -> tuple[int, list[Resource]]:
    patients = patients_for(user)
    for parameter in parameters:
        if parameter.name == "identifier":
            patients = patients.filter(_any(parameter.alternatives, _mrn_q))
        else:
            patients = patients.filter(_name_q(parameter))
    total, found = _page(patients.order_by("name", "id"), page)
    return total, [builders.patient_resource(patient) for patient in found]


def _mrn_q(value: str) -> Q:
    system, code = _token(value)
    return Q(mrn=code) if system in (None, settings.FHIR_MRN_SYSTEM) else _nothing()


def _name_q(parameter: Parameter) -> Q:
    def one(value: str) -> Q:
        if parameter.modifier == "exact":
            return Q(name=value)
        if parameter.modifier == "contains":
            return Q(name__icontains=value)
        return Q(name__istartswith=value) | Q(name__icontains=f" {value}")  # FHIR: starts with

    return _any(parameter.alternatives, one)


def _imaging_studies(user: Viewer, parameters: list[Parameter], page: slice) -> tuple[int, list[Resource]]:
    studies = reads.studies_with_series(user)
    for parameter in parameters:
        if parameter.name in PATIENT:
            studies = studies.filter(patient_q("patient_id", parameter))
        elif parameter.name == "identifier":
            studies = studies.filter(_any(parameter.alternatives, _study_identifier_q))
        else:
            studies = studies.filter(date_q("study_date", parameter))
    total, found = _page(studies.order_by("-study_date", "-created_at", "-id"), page)
    return total, [builders.imaging_study_resource(study) for study in found]


def _study_identifier_q(value: str) -> Q:
    system, code = _token(value)
    uid = Q(study_instance_uid=code.removeprefix("urn:oid:"))
    accession = Q(accession_number=code)
    # The accession number is an identifier without a system (`|A-77` or `A-77`).
    return {None: uid | accession, builders.DICOM_UID: uid, "": accession}.get(system, _nothing())


def _diagnostic_reports(user: Viewer, parameters: list[Parameter], page: slice) -> tuple[int, list[Resource]]:
    predictions, reviews = reads.reports_for(user), reads.reviews_for(user)
    statuses = set(REPORT_STATUSES)
    for parameter in parameters:
        if parameter.name in PATIENT:
            predictions = predictions.filter(patient_q("scan__patient_id", parameter))
            reviews = reviews.filter(patient_q("prediction__scan__patient_id", parameter))
        elif parameter.name == "date":
            predictions = predictions.filter(date_q("scan__study_date", parameter))
            reviews = reviews.filter(date_q("prediction__scan__study_date", parameter))
        else:
            statuses &= _statuses(parameter)
    if "preliminary" not in statuses:
        predictions = predictions.none()
    if not {"final", "amended"} & statuses:
        reviews = reviews.none()
    elif {"final", "amended"} - statuses:
        reviews = reviews.filter(supersedes__isnull="final" in statuses)
    total = predictions.count() + reviews.count()
    if page.stop <= page.start or page.start >= total:
        return total, []
    # Both kinds in one order, the latest issued first: their keys in one query, then the page's rows.
    keys = (
        predictions.order_by()
        .annotate(kind=Value(0, output_field=IntegerField()), at=Coalesce("finished_at", "created_at"))
        .values_list("at", "kind", "pk")
        .union(
            reviews.order_by()
            .annotate(kind=Value(1, output_field=IntegerField()), at=F("created_at"))
            .values_list("at", "kind", "pk"),
            all=True,
        )
        .order_by("-at", "-kind", "-pk")[page]
    )
    rows = [(kind, pk) for _, kind, pk in keys]
    found_predictions = reads.reports_for(user).in_bulk([pk for kind, pk in rows if kind == 0])
    found_reviews = reads.reviews_for(user).in_bulk([pk for kind, pk in rows if kind == 1])
    return total, [
        builders.prediction_report(found_predictions[pk])
        if kind == 0
        else builders.review_report(found_reviews[pk])
        for kind, pk in rows
    ]


def _statuses(parameter: Parameter) -> set[str]:
    values = set(parameter.alternatives)
    unknown = values - REPORT_STATUSES - OTHER_REPORT_STATUSES
    if unknown:
        raise SearchError(f"status: {_shown(sorted(unknown)[0])} is not a DiagnosticReport status.")
    return values


def _observations(user: Viewer, parameters: list[Parameter], page: slice) -> tuple[int, list[Resource]]:
    predictions = reads.reports_for(user)
    kinds = set(builders.OBSERVATION_KINDS)
    for parameter in parameters:
        if parameter.name in PATIENT:
            predictions = predictions.filter(patient_q("scan__patient_id", parameter))
        else:
            kinds &= {kind for value in parameter.alternatives for kind in _observation_kinds(value)}
    # An observation is a column of a prediction: list them from the columns alone, then fetch the page's.
    columns = predictions.order_by("-created_at", "-id").values_list(
        "pk", "status", "suspicion", "p_normal", "p_benign", "p_malignant"
    )
    matches = (
        [
            (pk, kind)
            for pk, status, suspicion, *probabilities in columns
            for kind in builders.observation_kinds_of(
                status, suspicion, dict(zip(CLASS_NAMES, probabilities, strict=True))
            )
            if kind in kinds
        ]
        if kinds
        else []
    )
    shown = matches[page]
    found = reads.reports_for(user).in_bulk({pk for pk, _ in shown})
    return len(matches), [builders.observation_resource(found[pk], kind) for pk, kind in shown]


def _observation_kinds(value: str) -> set[str]:
    system, code = _token(value)
    if system not in (None, builders.CODE_SYSTEM) or code not in OBSERVATION_CODES:
        return set()
    return {OBSERVATION_CODES[code]}


def _devices(user: Viewer, parameters: list[Parameter], page: slice) -> tuple[int, list[Resource]]:
    total, found = _page(ModelVersion.objects.order_by("-created_at", "-id"), page)
    return total, [builders.device_resource(version) for version in found]


SEARCHES: dict[str, Callable[[Viewer, list[Parameter], slice], tuple[int, list[Resource]]]] = {
    "Patient": _patients,
    "ImagingStudy": _imaging_studies,
    "DiagnosticReport": _diagnostic_reports,
    "Observation": _observations,
    "Device": _devices,
}
