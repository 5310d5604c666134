"""Audit by construction: every URL of the project, walked from the URL resolver (pages, API,
FHIR, files, DICOMweb, admin), is requested as a clinician of a populated care team; whatever
answers 200 with the patient's data must have written an audit read naming the patient, and a
clinician of another team must get a 404 at the same URL (and never the data). No list of URLs is
kept here: a view added tomorrow is walked tomorrow. A GET that fails with a 500 fails the walk
too (an error hides what a view shows and records).

How a route's arguments are filled, by rule (never per URL):
- the values are the care team's records: the primary key of one row of each model that names
  the patient as its `audit_patient_id` (every model the trail knows as a patient's), the DICOM
  instance UIDs those rows hold, the logical ids of the resources the clinician's FHIR searches
  return, and the API's renderer formats (DRF's `.json` suffix);
- a value fills an argument when the argument's converter or regex accepts it and the path made
  with it resolves back to the same route (a value another route would answer is not this one's);
- a regex that lists its values (`auth|cases|…`, the admin's app labels) is filled with those; a
  catch-all (a regex accepting the empty text) with one value;
- query strings come from the pages themselves: the GET forms of every page walked are sent as a
  browser sends them unchanged (the comparison of two studies, searches, the worklist filter);
- Django admin is for staff: a clinician is sent to the admin login (or shown its login or
  logout) before any admin view runs, so each admin route is requested once, and must show
  nothing of the patient and write no read.
The set of routes no rule fills must be empty. Every table's ids are first moved into a range of
their own, so that a number in a URL is one record of one table: a route answered for one of the
patient's records shows their data even when its body names no one (a prediction's JSON, a
heatmap), and a route that answered one table's id answers no other's (the walk moves on). A
route without a record in its path shows the patient's data when it answers a file or a body
holding their name, MRN, a study's UIDs or a FHIR reference to them; such a list may be recorded
as a list read (lists are recorded without ids or search text, see test_reads)."""

from __future__ import annotations

import html
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any, cast
from urllib.parse import urlencode, urlsplit

import numpy as np
import pytest
from django.apps import apps
from django.core.cache import cache
from django.db import connection
from django.db.models.fields import AutoFieldMixin, SmallAutoField
from django.http import FileResponse, StreamingHttpResponse
from django.test import Client
from django.urls import Resolver404, URLPattern, URLResolver, get_resolver, resolve
from django.urls.resolvers import RegexPattern, RoutePattern
from knox.models import AuthToken
from rest_framework.settings import api_settings

from audit.models import AuditEntry
from cases import services
from cases.models import Patient
from cases.services import prediction_runs
from inference.study import StudyRule
from tests.fhir_api.studies import dicom_study
from tests.reading.studies import sign

pytestmark = pytest.mark.django_db

ID_STRIDE = 10**9  # each table's ids start at a multiple of this: a number names one table's row
ADMIN_NAMESPACE = "admin"


# --- the routes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """One URL pattern with the patterns it is included under, outermost first."""

    chain: tuple[Any, ...]  # RoutePattern and RegexPattern
    namespaces: tuple[str, ...]

    @property
    def text(self) -> str:
        return "".join(str(pattern) for pattern in self.chain)

    @property
    def arguments(self) -> dict[str, Callable[[str], str]]:
        """Each keyword argument, and how a value of it is written in the path."""
        found: dict[str, Callable[[str], str]] = {}
        for pattern in self.chain:
            if isinstance(pattern, RoutePattern):
                found.update({name: _writer(c.regex, c.to_url) for name, c in pattern.converters.items()})
            else:
                found.update({name: _writer(regex, str) for name, regex in _groups(str(pattern)).items()})
        return found

    def path(self, values: dict[str, str]) -> str:
        arguments = self.arguments
        written = {name: arguments[name](value) for name, value in values.items()}
        return "/" + "".join(_fill(pattern, written) for pattern in self.chain)

    def resolves_to_itself(self, path: str, values: dict[str, str]) -> bool:
        try:
            match = resolve(path)
        except Resolver404:
            return False
        same_route = match.route.replace("^", "") == self.text.replace("^", "")
        return same_route and {k: str(v) for k, v in match.kwargs.items()} == values


def routes(
    resolver: URLResolver | None = None, chain: tuple[Any, ...] = (), namespaces: tuple[str, ...] = ()
) -> Iterator[Route]:
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            inner = (*namespaces, entry.namespace) if entry.namespace else namespaces
            yield from routes(entry, (*chain, entry.pattern), inner)
        elif isinstance(entry, URLPattern):
            yield Route((*chain, entry.pattern), namespaces)


def _writer(regex: str, to_url: Callable[[Any], str]) -> Callable[[str], str]:
    """The value as the path writes it; ValueError where the argument's pattern refuses it."""

    def write(value: str) -> str:
        written = to_url(value)
        if not re.fullmatch(regex, written):
            raise ValueError(f"{regex} refuses {written}")
        return written

    write.regex = regex  # type: ignore[attr-defined]
    return write


def _groups(regex: str) -> dict[str, str]:
    """Named groups of a regex and their own patterns (balanced parentheses)."""
    found = {}
    for start in re.finditer(r"\(\?P<(\w+)>", regex):
        depth, index = 1, start.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(regex[index], 0) if regex[index - 1] != "\\" else 0
            index += 1
        found[start[1]] = regex[start.end() : index - 1]
    return found


def _fill(pattern: RoutePattern | RegexPattern, values: dict[str, str]) -> str:
    if isinstance(pattern, RoutePattern):
        return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: values[m[1]], str(pattern))
    text = str(pattern)
    for name, group in _groups(text).items():
        text = text.replace(f"(?P<{name}>{group})", values[name])
    return text.replace("^", "").replace("$", "").replace("/?", "/").replace("\\.", ".")


# --- the care team ------------------------------------------------------------------------------


class StandInPredictor:
    """Stands in for the CNN only: the worker's own code reads the slices, applies the study rule,
    draws the heatmaps and stores the result."""

    image_size = 64
    rule = StudyRule()
    hashes = {"member0.keras": "0" * 64}

    def not_assessable_reason(self, found: Any) -> None:
        return None

    def predict(self, images: Any) -> np.ndarray:
        return np.array([[0.1, 0.2, 0.7] for _ in images])

    def heatmap(self, image: Any) -> np.ndarray:
        return np.linspace(0, 1, self.image_size**2).reshape(self.image_size, self.image_size)


def spread_ids() -> None:
    """Start every table's ids at a multiple of ID_STRIDE of its own (rolled back with the test)."""
    models = sorted(apps.get_models(), key=lambda model: model._meta.db_table)
    with connection.cursor() as cursor:
        for index, model in enumerate(models, start=1):
            pk = model._meta.pk
            if model._meta.proxy or not isinstance(pk, AutoFieldMixin) or isinstance(pk, SmallAutoField):
                continue
            if pk.get_internal_type() != "BigAutoField":  # third-party 32-bit ids: not in our URLs
                continue
            table, column, start = model._meta.db_table, pk.column, ID_STRIDE * index
            if connection.vendor == "postgresql":
                quote = connection.ops.quote_name
                cursor.execute(
                    f"ALTER TABLE {quote(table)} ALTER COLUMN {quote(column)} RESTART WITH {start}"
                )
            elif connection.vendor == "sqlite":
                cursor.execute("DELETE FROM sqlite_sequence WHERE name = %s", [table])
                cursor.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (%s, %s)", [table, start])


@dataclass
class CareTeam:
    patient: Patient
    records: dict[int, Any]  # every row naming the patient, by primary key
    uids: set[str]
    fhir_ids: set[str] = field(default_factory=set)

    def samples(self) -> list[str]:
        """One record of each kind: rows of one table answer alike."""
        first: dict[type, int] = {}
        for pk, row in sorted(self.records.items()):
            first.setdefault(type(row), pk)
        return [str(pk) for pk in first.values()]

    def names_a_record(self, values: Iterable[str]) -> bool:
        return any(value.isdigit() and int(value) in self.records for value in values)

    def shown_in(self, answer: Answer) -> bool:
        """The answer shows this patient's data: a file, or a body naming them or their study."""
        texts = {self.patient.mrn, self.patient.name, html.escape(self.patient.name), *self.uids}
        texts.add(f"Patient/{self.patient.pk}")
        return answer.is_file or any(text.encode() in answer.body for text in texts if text)


def patient_records(patient: Patient) -> dict[int, Any]:
    found = {}
    for model in apps.get_models():
        if not isinstance(getattr(model, "audit_patient_id", None), property):
            continue
        for row in model._default_manager.all():
            if getattr(row, "audit_patient_id", None) == patient.pk:
                found[row.pk] = row
    return found


@pytest.fixture
def care_team(alice, team_a, monkeypatch, django_capture_on_commit_callbacks) -> CareTeam:
    """A patient with a DICOM study (series, slices with Hounsfield units), its prediction finished
    by the worker's own code (slice results, heatmaps) and a signed reading, and an earlier study
    waiting for its prediction, all in team A."""
    from tests import factories

    spread_ids()
    patient = cast(Patient, factories.PatientFactory(team=team_a, created_by=alice))
    (scan,) = dicom_study(patient, alice, sizes=(2,))
    prediction = scan.predictions.get()
    monkeypatch.setattr(prediction_runs, "model_version_predictor", lambda version: StandInPredictor())
    with django_capture_on_commit_callbacks(execute=False):
        services.prediction_execute(prediction_id=prediction.pk, task_id="audit-walk")
    prediction.refresh_from_db()
    assert prediction.status == "succeeded" and prediction.slice_results.exclude(heatmap="").exists()
    sign(scan, alice, prediction.label or "malignant")
    dicom_study(patient, alice, sizes=(1,), study_date="20261001")  # an earlier study, still queued
    records = patient_records(patient)
    uids = {
        value
        for row in records.values()
        for model_field in row._meta.concrete_fields
        if model_field.name.endswith("instance_uid") and (value := getattr(row, model_field.attname))
    }
    return CareTeam(patient=patient, records=records, uids=uids)


# --- walking ------------------------------------------------------------------------------------


def signed_in(user: Any) -> Client:
    """A browser session that also carries an API token: pages and files read the session, the
    API, FHIR and DICOMweb the token (as their clients do)."""
    _, token = AuthToken.objects.create(user)
    client = Client(HTTP_AUTHORIZATION=f"Token {token}", raise_request_exception=False)
    client.force_login(user)
    return client


@dataclass
class Answer:
    path: str
    content_type: str
    status: int
    is_file: bool
    body: bytes
    location: str
    reads: list[AuditEntry]


def fetch(client: Client, path: str, user: Any) -> Answer:
    cache.clear()  # throttles count in the cache: hundreds of requests are not an attack here
    last = AuditEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0
    response = client.get(path)
    is_file = isinstance(response, FileResponse | StreamingHttpResponse)
    # Read to the end: the test client then closes a file without closing the database connection.
    body = cast(StreamingHttpResponse, response).getvalue() if is_file else response.content
    reads = list(AuditEntry.objects.filter(id__gt=last, user=user, action=AuditEntry.Action.READ))
    return Answer(
        path,
        response.get("Content-Type", ""),
        response.status_code,
        is_file,
        body,
        response.get("Location", ""),
        reads,
    )


def fillings(route: Route, care_team: CareTeam) -> list[dict[str, str]]:
    """Every way the care team's values fill the route's arguments (see the module's rules)."""
    arguments = route.arguments
    if not arguments:
        return [{}]
    pool = list(dict.fromkeys([*care_team.samples(), *sorted(care_team.uids), *sorted(care_team.fhir_ids)]))
    formats = sorted({str(renderer.format) for renderer in api_settings.DEFAULT_RENDERER_CLASSES})
    choices = []
    for name, write in arguments.items():
        regex = write.regex  # type: ignore[attr-defined]
        if re.fullmatch(r"\w+(\|\w+)+", regex):  # a regex listing its values
            choices.append(regex.split("|"))
        elif name == "format":  # DRF's format suffix
            choices.append(formats)
        elif re.fullmatch(regex, ""):  # a catch-all: one probe is enough
            choices.append(pool[:1])
        else:
            choices.append([value for value in pool if _writes(write, value)])
    found = []
    for combination in itertools.product(*choices):
        values = dict(zip(arguments, combination, strict=True))
        if all(
            _writes(arguments[name], value) for name, value in values.items()
        ) and route.resolves_to_itself(route.path(values), values):
            found.append(values)
    return found


def _writes(write: Callable[[str], str], value: str) -> bool:
    try:
        write(value)
    except ValueError:
        return False
    return True


def harvest_fhir_ids(answer: Answer, care_team: CareTeam) -> None:
    """The logical ids of the resources a FHIR search returned (to fill `<fhir_id:…>`)."""
    try:
        bundle = json.loads(answer.body)
    except ValueError:
        return
    if isinstance(bundle, dict) and bundle.get("resourceType") == "Bundle":
        care_team.fhir_ids.update(entry["resource"]["id"] for entry in bundle.get("entry", []))


@dataclass
class Walk:
    """The walk as a clinician of the care team (and, where they were shown its data, as a
    clinician of another team), and what it found."""

    clinician: Any
    outsider: Any
    care_team: CareTeam
    patient_routes: set[str] = field(default_factory=set)
    unfilled: list[str] = field(default_factory=list)
    unaudited: list[str] = field(default_factory=list)
    leaked: list[tuple[str, int]] = field(default_factory=list)
    admin_reached: list[tuple[str, int]] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)
    forms: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.as_clinician, self.as_outsider = signed_in(self.clinician), signed_in(self.outsider)

    def route(self, route: Route) -> None:
        found = fillings(route, self.care_team)
        if not found:
            self.unfilled.append(route.text)
        elif ADMIN_NAMESPACE in route.namespaces:
            # Staff only: a clinician is sent to the admin's login, or shown nothing of a patient
            # (the login page itself, a logout).
            path = route.path(found[0])
            answer = fetch(self.as_clinician, path, self.clinician)
            if answer.status not in (200, 302) or answer.reads or self.care_team.shown_in(answer):
                self.admin_reached.append((path, answer.status))
        else:
            for values in found:
                status, names_a_record = self.read(route, values)
                # GET is refused whatever the values; and ids are one table's (spread_ids), so a
                # route that answered one record's id answers no other table's.
                if status == 405 or (status == 200 and names_a_record):
                    break

    def read(self, route: Route, values: dict[str, str]) -> tuple[int, bool]:
        path = route.path(values)
        return self.check(path, route.text, names_a_record=self.care_team.names_a_record(values.values()))

    def check(self, path: str, route_text: str, *, names_a_record: bool) -> tuple[int, bool]:
        answer = fetch(self.as_clinician, path, self.clinician)
        harvest_fhir_ids(answer, self.care_team)
        self.forms.extend(form for form in get_forms(answer) if form not in self.forms)
        if answer.status == 500:  # an error would hide whatever the view shows and records
            self.broken.append(path)
        if answer.status != 200 or not (names_a_record or self.care_team.shown_in(answer)):
            return answer.status, names_a_record
        self.patient_routes.add(route_text)
        patient_id = self.care_team.patient.pk
        # One patient's record: a read naming them. A list (no record in the path): a read
        # naming the patient, or a list read (lists are recorded without ids or search text).
        if not any(read.patient_id == patient_id for read in answer.reads) and (
            names_a_record or not any(read.object_id is None for read in answer.reads)
        ):
            self.unaudited.append(path)
        refused = fetch(self.as_outsider, path, self.outsider)
        if (names_a_record and refused.status != 404) or self.care_team.shown_in(refused):
            self.leaked.append((path, refused.status))
        return answer.status, names_a_record

    def submit_forms(self) -> None:
        """Send the GET forms the pages held, as a browser would send them unchanged: the query
        strings a route reads (two studies to compare) come from its own pages."""
        for action, fields in self.forms:
            try:
                match = resolve(urlsplit(action).path)
            except Resolver404:
                continue
            if ADMIN_NAMESPACE in match.namespaces:
                continue
            values = [*match.kwargs.values(), *(value for _, value in fields)]
            path = f"{urlsplit(action).path}?{urlencode(fields)}"
            self.check(
                path,
                f"{match.route}?{'&'.join(name for name, _ in fields)}",
                names_a_record=self.care_team.names_a_record(map(str, values)),
            )


class GetForms(HTMLParser):
    """A page's GET forms: their action, and the fields a browser sends when nothing is changed
    (inputs' values, each select's selected option or else its first)."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.page = page
        self.forms: list[tuple[str, list[tuple[str, str]]] | None] = []  # None: a POST form
        self.select: list[str] = []  # the open select's name, its selected option or first

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value or "" for name, value in attrs}
        if tag == "form":
            get = found.get("method", "get").lower() == "get"
            self.forms.append((found.get("action") or self.page, []) if get else None)
        elif not self.forms or self.forms[-1] is None or not found.get("name") and tag != "option":
            return
        elif tag == "input" and found.get("type", "text") not in ("submit", "checkbox", "radio", "button"):
            self.forms[-1][1].append((found["name"], found.get("value", "")))
        elif tag == "select":
            self.select = [found["name"]]
        elif tag == "option" and self.select and (len(self.select) == 1 or "selected" in found):
            self.select[1:] = [found.get("value", "")]

    def handle_endtag(self, tag: str) -> None:
        if tag == "select" and len(self.select) == 2 and self.forms and self.forms[-1] is not None:
            self.forms[-1][1].append((self.select[0], self.select[1]))
        if tag == "select":
            self.select = []


def get_forms(answer: Answer) -> list[tuple[str, list[tuple[str, str]]]]:
    if answer.status != 200 or answer.is_file or not answer.content_type.startswith("text/html"):
        return []
    parser = GetForms(answer.path)
    parser.feed(answer.body.decode(errors="replace"))
    return [form for form in parser.forms if form is not None]


def test_every_url_that_shows_a_patients_data_writes_a_read_naming_the_patient(alice, charlie, care_team):
    walk = Walk(alice, charlie, care_team)
    walked = sorted(routes(), key=lambda route: (bool(route.arguments), route.text))  # searches first
    for route in walked:
        walk.route(route)
    walk.submit_forms()

    print(f"{len(walk.patient_routes)} routes showed the patient's data: {sorted(walk.patient_routes)}")
    assert not walk.broken, "server errors on a clinician's GET"
    assert not walk.unfilled, "routes whose arguments no rule of this module fills"
    assert not walk.unaudited, "answered with the patient's data and no audit read naming the patient"
    assert not walk.leaked, "another team's clinician was not told these do not exist"
    assert not walk.admin_reached, "admin routes a clinician reached"
    # The walk reached every kind of surface (a check on the walker, not a list of URLs).
    for prefix in ("patients/", "scans/", "files/", "api/v1/", "fhir/"):
        assert any(text.startswith(prefix) for text in walk.patient_routes), prefix
    assert any(route.text.startswith("dicomweb/") for route in walked)
