"""FHIR R4 over DRF: the API's authentication (knox token as `Token …` or `Bearer …`, session),
permission and throttles; `application/fhir+json` for any client that takes JSON, 406 for one that
asks for XML or another format only; every error an OperationOutcome (401 anonymous, 404 outside
the user's teams or unknown, 400 a bad search parameter, or an unsupported one under
`Prefer: handling=strict`). Every search is audited as a read of each patient whose data it showed.

Thin: `reads` and `search` fetch through `cases.selectors`; `builders` makes the JSON."""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlencode

from django.http import Http404
from knox.auth import TokenAuthentication
from rest_framework import exceptions, permissions, renderers
from rest_framework.authentication import SessionAuthentication
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit import trail
from cases.api.throttles import AnonRateThrottle, UserRateThrottle

from . import builders, reads
from .capability import capability_statement
from .links import resource_url
from .search import Page, SearchError, search

# What a client may ask for and get FHIR JSON (R4 http.html: _format overrides Accept).
JSON_MEDIA_TYPES = {
    "application/fhir+json",
    "application/json",
    "application/json+fhir",
    "application/*",
    "*/*",
}
JSON_FORMATS = {"json", "fhir+json", "application/json", "application/fhir+json"}
NOT_ACCEPTABLE = (
    "This server answers in FHIR JSON only (application/fhir+json); it has no XML or other format."
)

OUTCOME_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    415: "not-supported",
    429: "throttled",
}


class FhirJsonRenderer(renderers.JSONRenderer):
    media_type = builders.FHIR_JSON
    format = "fhir+json"


class FhirJsonOnly(BaseContentNegotiation):
    """One representation, FHIR JSON: for no Accept, or one that takes JSON (`*/*` included), or
    `_format=json`; anything else (`application/fhir+xml`, `_format=xml`) is a 406 OperationOutcome,
    in JSON."""

    def select_parser(self, request: Request, parsers: Any) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(self, request: Request, renderers: Any, format_suffix: str | None = None) -> Any:
        wanted = request.query_params.get("_format")
        if wanted is not None:
            # An unescaped `+` in a query string arrives as a space.
            acceptable = wanted.strip().replace(" ", "+").lower() in JSON_FORMATS
        else:
            acceptable = takes_json(request.META.get("HTTP_ACCEPT", ""))
        if not acceptable:
            raise exceptions.NotAcceptable(NOT_ACCEPTABLE)
        return renderers[0], renderers[0].media_type


def takes_json(accept: str) -> bool:
    """Whether an Accept header (none: anything) takes FHIR JSON at a non-zero quality."""
    if not accept.strip():
        return True
    for media_range in accept.split(","):
        media_type, *parameters = (part.strip().lower() for part in media_range.split(";"))
        quality = next((p.partition("=")[2] for p in parameters if p.replace(" ", "").startswith("q=")), "1")
        try:
            weight = float(quality)
        except ValueError:
            weight = 1.0
        if media_type in JSON_MEDIA_TYPES and weight > 0:
            return True
    return False


class BearerTokenAuthentication(TokenAuthentication):
    """The API's knox tokens sent as `Authorization: Bearer …`, as FHIR (SMART) clients send them."""

    def authenticate_header(self, request: Any) -> str:
        return "Bearer"  # knox reads the expected keyword from here


def strict_handling(request: Request) -> bool:
    """`Prefer: handling=strict`: refuse unknown search parameters; lenient (ignore them) otherwise,
    as R4 advises."""
    for preference in request.headers.get("Prefer", "").split(","):
        name, _, value = preference.split(";")[0].partition("=")
        if name.strip().lower() == "handling":
            return value.strip().strip('"').lower() == "strict"
    return False


def audit_search(resource_type: str, page: Page) -> None:
    """A read per patient whose data the search returned, with how much (written with the
    request's other reads, in one query); a search that showed no patient's data, one entry
    without a patient."""
    object_type = f"fhir_{resource_type.lower()}"
    patients = page.patients()
    included = {resource["id"] for resource in page.included}
    for patient_id, count in sorted(patients.items()):
        detail = f"FHIR {resource_type} search: {count} {resource_type} returned"
        if str(patient_id) in included:
            detail += ", and the Patient (_include)"
        trail.read_list(object_type, patient_id=patient_id, detail=detail)
    if not patients:
        shown = "a count" if page.summary_count else f"{len(page.resources)} returned"
        trail.read_list(object_type, detail=f"FHIR {resource_type} search: {shown}")


def outcome_response(
    status: int, diagnostics: str, *, code: str = "", headers: dict[str, str] | None = None
) -> Response:
    body = builders.operation_outcome(code or OUTCOME_CODES.get(status, "processing"), diagnostics)
    return Response(body, status=status, headers=headers)


def fhir_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, SearchError):
        return outcome_response(400, str(exc), code=exc.code)
    if isinstance(exc, Http404):
        return outcome_response(404, "No resource of this type has this id, or it is not in your care teams.")
    if not isinstance(exc, exceptions.APIException):
        return None  # a server error: DRF raises it, Django logs it
    headers = {}
    auth_header = getattr(exc, "auth_header", None)  # set by DRF on a 401
    if auth_header:
        headers["WWW-Authenticate"] = str(auth_header)
    wait = getattr(exc, "wait", None)  # a Throttled's seconds to wait
    if wait is not None:
        headers["Retry-After"] = str(math.ceil(wait))
    return outcome_response(exc.status_code, str(exc.detail), headers=headers)


class FhirView(APIView):
    # The first names the scheme of a 401's WWW-Authenticate.
    authentication_classes = [TokenAuthentication, BearerTokenAuthentication, SessionAuthentication]
    permission_classes = [permissions.IsAuthenticated]
    throttle_classes = [AnonRateThrottle, UserRateThrottle]
    renderer_classes = [FhirJsonRenderer]
    parser_classes: list[Any] = []  # read-only: no body is read
    content_negotiation_class = FhirJsonOnly
    schema = None  # FHIR is its own standard, not part of the portal's OpenAPI contract
    resource_type = ""  # set per URL

    def get_exception_handler(self) -> Any:
        return fhir_exception_handler


class ReadView(FhirView):
    """GET /fhir/{type}/{id}"""

    def get(self, request: Request, logical_id: str) -> Response:
        resource, record = reads.read(request.user, self.resource_type, logical_id)
        if record is not None:
            trail.read(record, detail=f"FHIR {self.resource_type}/{logical_id}")
        return Response(resource)


class SearchView(FhirView):
    """GET /fhir/{type}?… : a searchset Bundle, a page at a time."""

    def get(self, request: Request) -> Response:
        page = search(request.user, self.resource_type, request.query_params, strict=strict_handling(request))
        audit_search(self.resource_type, page)
        base = request.build_absolute_uri(request.path)

        def at(offset: int) -> str:
            # What the search understood, as given: ignored parameters are left out.
            return f"{base}?{urlencode([*page.parameters, ('_count', page.count), ('_offset', offset)])}"

        links = {"self": at(page.offset)}
        if not page.summary_count:
            if page.offset + page.count < page.total and page.count:
                links["next"] = at(page.offset + page.count)
            if page.offset > 0:
                links["previous"] = at(max(page.offset - page.count, 0))

        def located(resources: list[builders.Resource]) -> list[tuple[str, builders.Resource]]:
            return [(resource_url(request, r["resourceType"], r["id"]), r) for r in resources]

        outcome = None
        if page.ignored and not page.summary_count:
            ignored = "Ignored (Prefer: handling=strict refuses them): " + "; ".join(page.ignored) + "."
            outcome = builders.operation_outcome("not-supported", ignored, severity="warning")
        bundle = builders.searchset(
            total=page.total,
            entries=located(page.resources),
            links=links,
            included=located(page.included),
            outcome=outcome,
        )
        return Response(bundle)


class MetadataView(FhirView):
    """GET /fhir/metadata: public, as FHIR clients read it before they authenticate; it holds no
    patient data."""

    authentication_classes: list[Any] = []
    permission_classes = [permissions.AllowAny]

    def get(self, request: Request) -> Response:
        return Response(
            capability_statement(request.build_absolute_uri(request.path.removesuffix("metadata")))
        )


class UnknownView(FhirView):
    """Anything else under /fhir/: for signed-in users, an OperationOutcome 404."""

    def get(self, request: Request, path: str) -> Response:
        raise Http404
