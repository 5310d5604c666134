"""FHIR R4 over DRF: the API's authentication (knox token, session), permission and throttles;
`application/fhir+json` whatever the client asks for; every error an OperationOutcome (401
anonymous, 404 outside the user's teams or unknown, 400 a bad search parameter).

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
from .search import SearchError, search

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
    """One representation: any Accept (or `_format`) gets FHIR JSON, never a 406 page."""

    def select_parser(self, request: Request, parsers: Any) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(self, request: Request, renderers: Any, format_suffix: str | None = None) -> Any:
        return renderers[0], renderers[0].media_type


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
    authentication_classes = [TokenAuthentication, SessionAuthentication]
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
        page = search(request.user, self.resource_type, request.query_params)
        trail.read_list(f"fhir_{self.resource_type.lower()}", detail="searched" if page.parameters else "")
        base = request.build_absolute_uri(request.path)

        def at(offset: int) -> str:
            return f"{base}?{urlencode([*page.parameters, ('_count', page.count), ('_offset', offset)])}"

        links = {"self": at(page.offset)}
        if page.offset + page.count < page.total and page.count:
            links["next"] = at(page.offset + page.count)
        if page.offset > 0:
            links["previous"] = at(max(page.offset - page.count, 0))
        entries = [
            (resource_url(request, resource["resourceType"], resource["id"]), resource)
            for resource in page.resources
        ]
        return Response(builders.searchset(total=page.total, entries=entries, links=links))


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
