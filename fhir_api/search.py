"""FHIR searches: the parameters each resource type takes, applied to the user's scoped
querysets, and one page of the result in a bounded number of queries.

Unknown or unsupported parameters (a name, a modifier, a sort key, an `_include`) are ignored, as R4
advises, and named in an OperationOutcome entry of the Bundle (`search.mode = outcome`) and left
out of its self link; with `Prefer: handling=strict` they are a 400 naming them all. A malformed
value of a parameter the server reads is a 400 either way.

Parameters (values may list alternatives separated by commas; a repeated parameter narrows):
- Patient: identifier ([system|]MRN, system| for any), name (starts a word of the name;
  :contains, :exact)
- ImagingStudy: patient / subject (Patient/{id} or {id}), identifier (Study Instance UID as
  urn:dicom:uid|urn:oid:…, or the accession number, |A-77), started / date (study date; eq ne gt
  lt ge le prefixes, YYYY, YYYY-MM or YYYY-MM-DD)
- DiagnosticReport: patient / subject, status (preliminary, final, amended), date (study date)
- Observation: patient / subject, code ([system|]code, system| for any)
- Device: none
- all: _id (logical ids), _lastUpdated (meta.lastUpdated, with prefixes, to the second or
  coarser), _sort (SORTS; `-` for descending), _include (the subject's Patient), _summary=count,
  _total (always accurate), _count (page size, at most FHIR_MAX_PAGE_SIZE), _offset (where the
  page starts), _format (JSON only: the view answers 406 for anything else)
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import reduce
from typing import TypeVar

from django.conf import settings
from django.db.models import DateTimeField, F, IntegerField, Model, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce, Greatest
from django.http import QueryDict
from django.utils import timezone

from cases.models import Scan
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
INSTANT = re.compile(
    r"^(eq|ne|gt|lt|ge|le|sa|eb|ap)?([0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2})"
    r"(?:T([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,9}))?)?(Z|[+-][0-9]{2}:[0-9]{2})?)?)?)?$"
)
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
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
# Searched on every type: the logical id, and meta.lastUpdated.
COMMON = {"_id": {""}, "_lastUpdated": {""}}
# The sort keys each type takes (a `-` before one sorts descending); after them, the type's own order.
SORTS: dict[str, tuple[str, ...]] = {
    "Patient": ("_id", "_lastUpdated", "name"),
    "ImagingStudy": ("_id", "_lastUpdated", "date", "started"),
    "DiagnosticReport": ("_id", "_lastUpdated", "date"),
    "Observation": ("_id", "_lastUpdated"),
    "Device": ("_id", "_lastUpdated"),
}
# What `_include` adds: the subject's Patient (`Type:subject`, `Type:patient`, either `:Patient`).
INCLUDES: dict[str, tuple[str, ...]] = {
    resource_type: tuple(
        f"{resource_type}:{name}{target}" for name in ("subject", "patient") for target in ("", ":Patient")
    )
    for resource_type in ("ImagingStudy", "DiagnosticReport", "Observation")
}
SUMMARIES = {"count", "false"}  # _summary=false is the whole resource, as without it
UNSUPPORTED_SUMMARIES = {"true", "text", "data"}
TOTALS = {"none", "estimate", "accurate"}  # the total is always accurate: one count query
ONCE = ("_count", "_offset", "_format", "_summary", "_total", "_sort")


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

    @property
    def key(self) -> str:
        return f"{self.name}:{self.modifier}" if self.modifier else self.name


@dataclass(frozen=True)
class Query:
    """A search as read: what narrows it (the type's parameters, `_id`, `_lastUpdated`), its order,
    and what it shows."""

    parameters: list[Parameter]
    sort: list[tuple[str, bool]]  # (key, descending)
    count: int
    offset: int
    summary_count: bool
    include_subject: bool
    echo: list[tuple[str, str]]  # what was understood, as given: for the self and paging links
    ignored: list[str]  # what was not, each named

    @property
    def page(self) -> slice:
        return slice(0, 0) if self.summary_count else slice(self.offset, self.offset + self.count)


@dataclass(frozen=True)
class Page:
    total: int
    resources: list[Resource]
    included: list[Resource]  # the matches' patients, for `_include`
    count: int
    offset: int
    parameters: list[tuple[str, str]]  # the search's own, as given: for the paging links
    ignored: list[str]  # unknown or unsupported parameters, left out (lenient handling)
    summary_count: bool

    def patients(self) -> Counter[int]:
        """How many of the matches belong to each patient (whose data the search showed)."""
        return Counter(pk for pk in map(patient_of, self.resources) if pk is not None)


def search(user: Viewer, resource_type: str, query: QueryDict, *, strict: bool = False) -> Page:
    """One page of a search. `strict`: an unknown or unsupported parameter is a SearchError rather
    than ignored (`Prefer: handling=strict`)."""
    read = parse(query, resource_type, strict=strict)
    total, found = SEARCHES[resource_type](user, read, read.page)
    return Page(
        total=total,
        resources=found,
        included=_included(user, found) if read.include_subject else [],
        count=read.count,
        offset=read.offset,
        parameters=read.echo,
        ignored=read.ignored,
        summary_count=read.summary_count,
    )


def parse(query: QueryDict, resource_type: str, *, strict: bool = False) -> Query:
    """The search as read; SearchError for a malformed value, and (`strict`) for anything the
    server does not support."""
    items = [(key, value) for key, values in query.lists() for value in values]
    if len(items) > MAX_PARAMETERS:
        raise SearchError(f"Give at most {MAX_PARAMETERS} search parameters.")
    parameters = [_parameter(key, value) for key, value in items]
    names = [p.name for p in parameters if p.name in ONCE]
    if len(set(names)) < len(names):
        raise SearchError(f"Give each of {', '.join(ONCE)} at most once.")
    reading = _Reading(resource_type, count=settings.FHIR_PAGE_SIZE)
    for parameter in parameters:
        reading.take(parameter)
    if strict and reading.ignored:
        raise SearchError(
            "Not supported (Prefer: handling=strict): " + "; ".join(reading.ignored) + ".",
            code="not-supported",
        )
    return Query(
        parameters=reading.parameters,
        sort=reading.sort,
        count=reading.count,
        offset=reading.offset,
        summary_count=reading.summary_count,
        include_subject=reading.include_subject,
        echo=reading.echo,
        ignored=reading.ignored,
    )


@dataclass
class _Reading:
    """A search being read, a parameter at a time."""

    resource_type: str
    count: int
    offset: int = 0
    parameters: list[Parameter] = field(default_factory=list)
    sort: list[tuple[str, bool]] = field(default_factory=list)
    summary_count: bool = False
    include_subject: bool = False
    echo: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def take(self, parameter: Parameter) -> None:
        name, value = parameter.name, parameter.value
        if name == "_format":
            return  # the view has answered anything but JSON with a 406
        if parameter.modifier and name in (*ONCE, "_include"):
            self.ignored.append(f"{_shown(parameter.key)} (no modifier is supported)")
        elif name == "_count":
            self.count = _number(name, value, settings.FHIR_MAX_PAGE_SIZE)
        elif name == "_offset":
            self.offset = _number(name, value, MAX_OFFSET)
        elif name == "_summary":
            self._summary(parameter)
        elif name == "_total":
            if value not in TOTALS:
                raise SearchError(f"_total: {_shown(value)} is not one of none, estimate, accurate.")
            self.echo.append((name, value))
        elif name == "_sort":
            self._sort(parameter)
        elif name == "_include":
            self._include(parameter)
        else:
            self._search(parameter)

    def _summary(self, parameter: Parameter) -> None:
        if parameter.value not in SUMMARIES | UNSUPPORTED_SUMMARIES:
            raise SearchError(
                f"_summary: {_shown(parameter.value)} is not one of true, text, data, count, false."
            )
        if parameter.value in UNSUPPORTED_SUMMARIES:
            self.ignored.append(f"_summary={parameter.value} (only count and false are supported)")
            return
        self.summary_count = parameter.value == "count"
        self.echo.append((parameter.name, parameter.value))

    def _sort(self, parameter: Parameter) -> None:
        sorts = SORTS[self.resource_type]
        keys = _sort_keys(parameter.value)
        unknown = [key for key, _ in keys if key not in sorts]
        if unknown:
            self.ignored.append(
                f"_sort by {', '.join(map(_shown, unknown))} (this type sorts by {', '.join(sorts)})"
            )
        self.sort = [(key, descending) for key, descending in keys if key in sorts]
        if self.sort:
            self.echo.append((parameter.name, ",".join(f"{'-' if d else ''}{key}" for key, d in self.sort)))

    def _include(self, parameter: Parameter) -> None:
        includes = INCLUDES.get(self.resource_type, ())
        if parameter.value in includes:
            self.include_subject = True
            self.echo.append((parameter.name, parameter.value))
        else:
            supported = ", ".join(includes[:2]) or "nothing"
            self.ignored.append(f"_include={_shown(parameter.value)} (this type includes: {supported})")

    def _search(self, parameter: Parameter) -> None:
        allowed = {**PARAMETERS[self.resource_type], **COMMON}
        name = parameter.name
        if name not in allowed:
            known = ", ".join(sorted(PARAMETERS[self.resource_type])) or "none"
            self.ignored.append(f"{_shown(parameter.key)} (unknown; this type takes: {known})")
        elif parameter.modifier not in allowed[name]:
            self.ignored.append(f"{_shown(parameter.key)} (no modifier {parameter.modifier!r})")
        elif not parameter.value:
            raise SearchError(f"{name} needs a value.")
        else:
            self.parameters.append(parameter)
            self.echo.append((parameter.key, parameter.value))


def _sort_keys(value: str) -> list[tuple[str, bool]]:
    keys = value.split(",")
    if len(keys) > MAX_ALTERNATIVES or not all(key.removeprefix("-") for key in keys):
        raise SearchError(f"_sort: give 1 to {MAX_ALTERNATIVES} keys, separated by commas.")
    return [(key.removeprefix("-"), key.startswith("-")) for key in keys]


def _parameter(key: str, value: str) -> Parameter:
    match = NAME.match(key)
    if match is None or CONTROL.search(value) or len(value) > MAX_VALUE_LENGTH:
        raise SearchError(f"Unreadable search parameter {_shown(key)}.")
    return Parameter(match[1], match[2] or "", value)


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
    """`system|code` (an empty system: none), `system|` (an empty code: any of that system), or a
    bare code (any system)."""
    if "|" not in value:
        return None, value
    system, _, code = value.partition("|")
    if not system and not code:
        raise SearchError(f"{_shown(value)}: give a system, a code or both around the '|'.")
    return system, code


def _ids(parameter: Parameter, pattern: re.Pattern[str]) -> list[re.Match[str]]:
    """`_id`'s values that are ids of this type (`reads`' patterns); any other id matches nothing."""
    values = parameter.alternatives
    for value in values:
        if not FHIR_ID.match(value):
            raise SearchError(f"_id: {_shown(value)} is not a FHIR id.")
    return [match for value in values if (match := pattern.match(value))]


def _pk_q(parameter: Parameter) -> Q:
    return Q(pk__in=[int(match[1]) for match in _ids(parameter, reads.PLAIN_ID)])


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


def instant_q(path: str, parameter: Parameter) -> Q:
    """An instant (meta.lastUpdated) against a year, month, day, minute, second or fraction of
    one, with FHIR's prefixes; a value without a zone is in the server's time zone."""

    def one(value: str) -> Q:
        match = INSTANT.match(value)
        if match is None:
            raise SearchError(
                f"{parameter.name}: {_shown(value)} is not a date or instant "
                "(YYYY-MM-DD or YYYY-MM-DDThh:mm:ssZ, with ge, le, …)."
            )
        prefix, year, month, day, hour, minute, second, fraction, zone = match.groups()
        if prefix in {"sa", "eb", "ap"}:
            raise SearchError(
                f"{parameter.name}: the prefix {prefix} is not supported.", code="not-supported"
            )
        try:
            start, end = _instant_range(year, month, day, hour, minute, second, fraction, zone)
        except (ValueError, OverflowError):
            raise SearchError(f"{parameter.name}: {_shown(value)} is not a date.") from None
        within = Q(**{f"{path}__gte": start, f"{path}__lt": end})
        return {
            "eq": within,
            "ne": ~within,
            "gt": Q(**{f"{path}__gte": end}),
            "lt": Q(**{f"{path}__lt": start}),
            "ge": Q(**{f"{path}__gte": start}),
            "le": Q(**{f"{path}__lt": end}),
        }[prefix or "eq"]

    return _any(parameter.alternatives, one)


def _instant_range(*parts: str | None) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of a partial instant's precision."""
    year, month, day, hour, minute, second, fraction, zone = parts
    if not zone:
        tz: dt.tzinfo = timezone.get_current_timezone()
    elif zone == "Z":
        tz = dt.UTC
    else:
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        tz = dt.timezone((-1 if zone[0] == "-" else 1) * dt.timedelta(hours=hours, minutes=minutes))
    digits = (fraction or "")[:6]
    start = dt.datetime(
        int(year or 0),
        int(month or 1),
        int(day or 1),
        int(hour or 0),
        int(minute or 0),
        int(second or 0),
        int(digits.ljust(6, "0")),
        tzinfo=tz,
    )
    try:
        end = _end_of(start, digits, second, minute, day, month)
    except (ValueError, OverflowError):  # a period ending past year 9999
        end = _LATEST
    return _utc(start), _utc(end)


def _end_of(
    start: dt.datetime,
    digits: str,
    second: str | None,
    minute: str | None,
    day: str | None,
    month: str | None,
) -> dt.datetime:
    if digits:
        return start + dt.timedelta(microseconds=10 ** (6 - len(digits)))
    if second or minute:
        return start + (dt.timedelta(seconds=1) if second else dt.timedelta(minutes=1))
    if day:
        return start + dt.timedelta(days=1)
    if month:
        return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    return start.replace(year=start.year + 1)


# The instants a database can compare: a day inside year 1 and year 9999, so no zone pushes them out
_EARLIEST = dt.datetime(1, 1, 2, tzinfo=dt.UTC)
_LATEST = dt.datetime(9999, 12, 30, tzinfo=dt.UTC)


def _utc(value: dt.datetime) -> dt.datetime:
    """In UTC and within what the database stores (year 1 with an eastern zone is year 0 in UTC)."""
    try:
        return min(max(value.astimezone(dt.UTC), _EARLIEST), _LATEST)
    except OverflowError:
        return _EARLIEST if value.year < 5000 else _LATEST


def _ordered(
    queryset: QuerySet[ModelT],
    sort: list[tuple[str, bool]],
    columns: Mapping[str, str],
    default: Sequence[str],
) -> QuerySet[ModelT]:
    """The queryset in the `_sort` order, then in the type's own."""
    keys = [f"{'-' if descending else ''}{columns[key]}" for key, descending in sort]
    return queryset.order_by(*keys, *default)


def patient_of(resource: Resource) -> int | None:
    """The id of the patient whose data `resource` is: a Patient's own, or its subject's."""
    if resource["resourceType"] == "Patient":
        return int(resource["id"])
    reference = (resource.get("subject") or {}).get("reference", "")
    match = PATIENT_REFERENCE.match(reference)
    return int(match[1]) if match and reference.startswith("Patient/") else None


def _included(user: Viewer, found: list[Resource]) -> list[Resource]:
    """`_include`: the Patients the matches are about, in one query (none when nothing matched)."""
    pks = {pk for pk in map(patient_of, found) if pk is not None}
    if not pks:
        return []
    return [
        builders.patient_resource(patient) for patient in patients_for(user).filter(pk__in=pks).order_by("id")
    ]


def _page(queryset: QuerySet[ModelT], page: slice) -> tuple[int, list[ModelT]]:
    total = queryset.count()
    return total, (list(queryset[page]) if page.stop > page.start and page.start < total else [])


# --- each type ----------------------------------------------------------------------------------


def _patients(user: Viewer, query: Query, page: slice) -> tuple[int, list[Resource]]:
    patients = patients_for(user)
    for parameter in query.parameters:
        if parameter.name == "_id":
            patients = patients.filter(_pk_q(parameter))
        elif parameter.name == "_lastUpdated":
            patients = patients.filter(instant_q("updated_at", parameter))
        elif parameter.name == "identifier":
            patients = patients.filter(_any(parameter.alternatives, _mrn_q))
        else:
            patients = patients.filter(_name_q(parameter))
    columns = {"_id": "id", "_lastUpdated": "updated_at", "name": "name"}
    total, found = _page(_ordered(patients, query.sort, columns, ("name", "id")), page)
    return total, [builders.patient_resource(patient) for patient in found]


def _mrn_q(value: str) -> Q:
    system, code = _token(value)
    if system not in (None, settings.FHIR_MRN_SYSTEM):
        return _nothing()  # `|Q-9` too: an MRN always has its system
    return Q(mrn=code) if code else ~Q(mrn="")


def _name_q(parameter: Parameter) -> Q:
    def one(value: str) -> Q:
        if parameter.modifier == "exact":
            return Q(name=value)
        if parameter.modifier == "contains":
            return Q(name__icontains=value)
        return Q(name__istartswith=value) | Q(name__icontains=f" {value}")  # FHIR: starts with

    return _any(parameter.alternatives, one)


def _imaging_studies(user: Viewer, query: Query, page: slice) -> tuple[int, list[Resource]]:
    studies = reads.studies_with_series(user)
    if "_lastUpdated" in {p.name for p in query.parameters} | {key for key, _ in query.sort}:
        studies = studies.annotate(last_updated=_study_last_updated())
    for parameter in query.parameters:
        if parameter.name == "_id":
            studies = studies.filter(_pk_q(parameter))
        elif parameter.name == "_lastUpdated":
            studies = studies.filter(instant_q("last_updated", parameter))
        elif parameter.name in PATIENT:
            studies = studies.filter(patient_q("patient_id", parameter))
        elif parameter.name == "identifier":
            studies = studies.filter(_any(parameter.alternatives, _study_identifier_q))
        else:
            studies = studies.filter(date_q("study_date", parameter))
    columns = {"_id": "id", "_lastUpdated": "last_updated", "date": "study_date", "started": "study_date"}
    ordered = _ordered(studies, query.sort, columns, ("-study_date", "-created_at", "-id"))
    total, found = _page(ordered, page)
    return total, [builders.imaging_study_resource(study) for study in found]


def _study_last_updated() -> Greatest:
    """An ImagingStudy's meta.lastUpdated: its arrival, or its latest series' (one joins later)."""
    latest = Scan.objects.filter(study=OuterRef("pk")).order_by("-created_at").values("created_at")[:1]
    return Greatest("created_at", Coalesce(Subquery(latest), "created_at"), output_field=DateTimeField())


def _study_identifier_q(value: str) -> Q:
    system, code = _token(value)
    if not code:  # `system|`: any identifier of that system
        return {builders.DICOM_UID: ~Q(study_instance_uid="")}.get(system or "", _nothing())
    uid = Q(study_instance_uid=code.removeprefix("urn:oid:"))
    accession = Q(accession_number=code)
    # The accession number is an identifier without a system (`|A-77` or `A-77`).
    return {None: uid | accession, builders.DICOM_UID: uid, "": accession}.get(system, _nothing())


def _diagnostic_reports(user: Viewer, query: Query, page: slice) -> tuple[int, list[Resource]]:
    # meta.lastUpdated is when the report was issued: the AI's result finished, a reading signed.
    predictions = reads.reports_for(user).annotate(issued_at=Coalesce("finished_at", "created_at"))
    reviews = reads.reviews_for(user)
    statuses = set(REPORT_STATUSES)
    for parameter in query.parameters:
        if parameter.name == "_id":
            found = [match.groups() for match in _ids(parameter, reads.REPORT_ID)]
            predictions = predictions.filter(pk__in=[int(pk) for kind, pk in found if kind == "prediction"])
            reviews = reviews.filter(pk__in=[int(pk) for kind, pk in found if kind == "review"])
        elif parameter.name == "_lastUpdated":
            predictions = predictions.filter(instant_q("issued_at", parameter))
            reviews = reviews.filter(instant_q("created_at", parameter))
        elif parameter.name in PATIENT:
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
    # Both kinds in one order (by default the latest issued first): their keys in one query, then
    # the page's rows. By _id, predictions (`prediction-…`) come before reviews (`review-…`).
    # (`source`, not `kind`: Review has a field of that name.)
    columns = {"_id": ("source", "pk"), "_lastUpdated": ("at",), "date": ("day",)}
    order = [
        f"{'-' if descending else ''}{column}" for key, descending in query.sort for column in columns[key]
    ]
    keys = (
        predictions.order_by()
        .annotate(source=Value(0, output_field=IntegerField()), at=F("issued_at"), day=F("scan__study_date"))
        .values_list("at", "source", "pk", "day")
        .union(
            reviews.order_by()
            .annotate(
                source=Value(1, output_field=IntegerField()),
                at=F("created_at"),
                day=F("prediction__scan__study_date"),
            )
            .values_list("at", "source", "pk", "day"),
            all=True,
        )
        .order_by(*order, "-at", "-source", "-pk")[page]
    )
    rows = [(kind, pk) for _, kind, pk, _ in keys]
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


def _observations(user: Viewer, query: Query, page: slice) -> tuple[int, list[Resource]]:
    predictions = reads.reports_for(user).annotate(issued_at=Coalesce("finished_at", "created_at"))
    kinds = set(builders.OBSERVATION_KINDS)
    wanted: set[tuple[int, str]] | None = None  # `_id`: (prediction, kind)
    for parameter in query.parameters:
        if parameter.name == "_id":
            pairs = {
                (int(pk), kind) for pk, kind in (m.groups() for m in _ids(parameter, reads.OBSERVATION_ID))
            }
            wanted = pairs if wanted is None else wanted & pairs
            predictions = predictions.filter(pk__in={pk for pk, _ in pairs})
        elif parameter.name == "_lastUpdated":
            predictions = predictions.filter(instant_q("issued_at", parameter))
        elif parameter.name in PATIENT:
            predictions = predictions.filter(patient_q("scan__patient_id", parameter))
        else:
            kinds &= {kind for value in parameter.alternatives for kind in _observation_kinds(value)}
    # An observation is a column of a prediction: list them from the columns alone, then fetch the page's.
    columns = predictions.order_by("-created_at", "-id").values_list(
        "pk", "issued_at", "status", "suspicion", "p_normal", "p_benign", "p_malignant"
    )
    matches = (
        [
            (pk, kind, issued)
            for pk, issued, status, suspicion, *probabilities in columns
            for kind in builders.observation_kinds_of(
                status, suspicion, dict(zip(CLASS_NAMES, probabilities, strict=True))
            )
            if kind in kinds and (wanted is None or (pk, kind) in wanted)
        ]
        if kinds
        else []
    )
    # `_sort`, last key first: Python's sort is stable, in either direction.
    for key, descending in reversed(query.sort):
        if key == "_id":
            matches.sort(key=lambda m: (m[0], builders.OBSERVATION_KINDS.index(m[1])), reverse=descending)
        else:
            matches.sort(key=lambda m: m[2], reverse=descending)
    shown = matches[page]
    found = reads.reports_for(user).in_bulk({pk for pk, _, _ in shown})
    return len(matches), [builders.observation_resource(found[pk], kind) for pk, kind, _ in shown]


def _observation_kinds(value: str) -> set[str]:
    system, code = _token(value)
    if system not in (None, builders.CODE_SYSTEM):
        return set()
    if not code:  # `system|`: every code of ours
        return set(builders.OBSERVATION_KINDS)
    return {OBSERVATION_CODES[code]} if code in OBSERVATION_CODES else set()


def _devices(user: Viewer, query: Query, page: slice) -> tuple[int, list[Resource]]:
    versions = ModelVersion.objects.all()
    for parameter in query.parameters:
        if parameter.name == "_id":
            versions = versions.filter(_pk_q(parameter))
        else:
            versions = versions.filter(instant_q("created_at", parameter))
    columns = {"_id": "id", "_lastUpdated": "created_at"}
    total, found = _page(_ordered(versions, query.sort, columns, ("-created_at", "-id")), page)
    return total, [builders.device_resource(version) for version in found]


SEARCHES: dict[str, Callable[[Viewer, Query, slice], tuple[int, list[Resource]]]] = {
    "Patient": _patients,
    "ImagingStudy": _imaging_studies,
    "DiagnosticReport": _diagnostic_reports,
    "Observation": _observations,
    "Device": _devices,
}
