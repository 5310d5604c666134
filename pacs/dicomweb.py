"""DICOMweb STOW-RS: `POST /dicomweb/studies` with `multipart/related; type="application/dicom"`,
authenticated by an API token. The body is parsed as it streams in (python-multipart), each
application/dicom part spooled to a temporary file and counted against the request's limits, so
a request holds about one chunk in memory, never the body. The answer is PS3.18's: DICOM JSON
naming every instance taken (ReferencedSOPSequence) and every one refused (FailedSOPSequence with
its FailureReason, the reason in words in a Warning header); 200 when all were stored, 202 when
some were, 409 when none."""

from __future__ import annotations

import tempfile
from typing import IO, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import HttpRequest, JsonResponse
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from rest_framework import renderers
from rest_framework.request import Request
from rest_framework.views import APIView

from cases import selectors
from cases.models import CareTeam, Scan
from core.http import error_response

from .reading import DicomRefused, Failure, Refusal, RequestBudget
from .receiving import Received, studies_receive

DICOM_JSON = "application/dicom+json"
READ_CHUNK = 1024 * 1024


class DicomJsonRenderer(renderers.JSONRenderer):
    media_type = DICOM_JSON
    format = "dicom+json"


class StowRsView(APIView):
    """Store DICOM instances (STOW-RS). The sender's care team is the token user's team (say
    `?team=<id>` when in several); each series goes to the team's patient whose MRN is its
    PatientID, or waits in the unmatched list."""

    schema = None  # DICOMweb is its own standard (PS3.18), not part of the portal's OpenAPI contract
    parser_classes: list[Any] = []  # the body is read here, as a stream
    renderer_classes = [DicomJsonRenderer, renderers.JSONRenderer]  # PACS ask for application/dicom+json

    def post(self, request: Request, study: str | None = None) -> JsonResponse:
        raw: HttpRequest = request._request
        team = _sending_team(request)
        if isinstance(team, JsonResponse):
            return _drained(raw, team)
        content_type = raw.META.get("CONTENT_TYPE", "")
        if not content_type.lower().startswith("multipart/related"):
            return _drained(
                raw,
                error_response('Send multipart/related; type="application/dicom" (STOW-RS).', status=415),
            )
        boundary = parse_options_header(content_type)[1].get(b"boundary", b"")
        if not boundary:
            return _drained(
                raw, error_response("The multipart/related Content-Type has no boundary.", status=400)
            )
        budget = RequestBudget()
        stream = _stream(raw)
        try:
            files, read = _parts(stream, boundary, budget)
        except DicomRefused as refused:  # a limit: the rest of the body is not kept
            _drain(stream)
            return error_response(str(refused), status=413)
        except MultipartParseError as error:
            _drain(stream)
            return error_response(f"The multipart/related body is malformed ({error}).", status=400)
        if not files:
            if not read and "chunked" in raw.META.get("HTTP_TRANSFER_ENCODING", "").lower():
                return error_response(
                    "This server cannot read a chunked body: send a Content-Length (Orthanc: "
                    '"ChunkedTransfers": false), or run the portal behind gunicorn (make run).',
                    status=411,
                )
            return error_response("The request holds no application/dicom part.", status=400)
        try:
            received = studies_receive(
                team=team,
                files=files,
                via=Scan.Received.STOW,
                sender=request.user.get_username(),
                user=selectors.signed_in(request.user),
                study_instance_uid=study,
                budget=budget,
                partial=True,
            )
        except ValidationError as refused:  # e.g. an implausible study date
            return error_response(" ".join(refused.messages), status=409)
        return _answer(received)


def _sending_team(request: Request) -> CareTeam | JsonResponse:
    teams = list(selectors.teams_for(request.user))
    wanted = request.query_params.get("team", "")
    if wanted:
        chosen = [team for team in teams if str(team.pk) == wanted]
        if not chosen:
            return error_response("team: not one of your care teams.", status=400)
        return chosen[0]
    if len(teams) == 1:
        return teams[0]
    if not teams:
        return error_response("You are in no care team; ask an administrator to add you to one.", status=403)
    return error_response("You are in several care teams: say which with ?team=<id>.", status=400)


def _stream(request: HttpRequest) -> Any:
    """Where the body comes from: Django's stream, or, for a chunked body (no Content-Length, as
    PACS send by default), the server's de-chunked input where it provides one (gunicorn does)."""
    if request.META.get("CONTENT_LENGTH") or not request.META.get("wsgi.input_terminated"):
        return request
    return request.META["wsgi.input"]


def _parts(stream: Any, boundary: bytes, budget: RequestBudget) -> tuple[list[tuple[str, IO[bytes]]], int]:
    """The application/dicom parts of a multipart/related body, each spooled to a temporary file
    as it streams in, and how many bytes the body had. Raises DicomRefused past a limit (a part
    over UPLOAD_MAX_FILE_BYTES, more than UPLOAD_MAX_FILES parts, the request's bytes)."""
    spooler = _PartSpooler(budget)
    parser = MultipartParser(boundary, spooler.callbacks())
    read = 0
    while chunk := stream.read(READ_CHUNK):
        read += len(chunk)
        parser.write(chunk)
    parser.finalize()
    return spooler.parts, read


def _drain(stream: Any) -> None:
    while stream.read(READ_CHUNK):  # leftover body bytes would break the client's connection
        pass


def _drained(request: HttpRequest, response: JsonResponse) -> JsonResponse:
    _drain(_stream(request))
    return response


class _PartSpooler:
    """python-multipart's callbacks: each part's headers kept, an application/dicom part's data
    written to a temporary file as it arrives (other parts, such as bulk data, are skipped)."""

    def __init__(self, budget: RequestBudget) -> None:
        self.budget = budget
        self.parts: list[tuple[str, IO[bytes]]] = []
        self.number = 0
        self.headers: dict[str, str] = {}
        self.field, self.value = b"", b""
        self.file: IO[bytes] | None = None
        self.size = 0

    def callbacks(self) -> Any:
        return {
            "on_part_begin": self.begin,
            "on_header_field": self.header_field,
            "on_header_value": self.header_value,
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
            "on_part_data": self.data,
            "on_part_end": self.end,
        }

    def begin(self) -> None:
        self.number += 1
        self.headers, self.file, self.size = {}, None, 0

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self.field += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self.value += data[start:end]

    def header_end(self) -> None:
        self.headers[self.field.decode("latin-1").strip().lower()] = self.value.decode("latin-1").strip()
        self.field, self.value = b"", b""

    def headers_finished(self) -> None:
        if self.headers.get("content-type", "").split(";")[0].strip().lower() != "application/dicom":
            return
        if len(self.parts) >= settings.UPLOAD_MAX_FILES:
            raise DicomRefused(
                f"More than {settings.UPLOAD_MAX_FILES} instances were sent in one request, the most one may "
                "hold; nothing was stored. Send the study in parts.",
                failure=Failure.OUT_OF_RESOURCES,
            )
        self.file = tempfile.TemporaryFile()

    def data(self, chunk: bytes, start: int, end: int) -> None:
        if self.file is None:
            return
        self.size += end - start
        if self.size > settings.UPLOAD_MAX_FILE_BYTES:
            raise DicomRefused(
                f"part {self.number}: is larger than {settings.UPLOAD_MAX_FILE_BYTES // (1024 * 1024)} MB, "
                "the most one instance may have; nothing was stored.",
                failure=Failure.OUT_OF_RESOURCES,
            )
        self.budget.take_bytes(f"part {self.number}", end - start)
        self.file.write(chunk[start:end])

    def end(self) -> None:
        if self.file is not None:
            self.parts.append((f"part {self.number}", self.file))
            self.file = None


def _answer(received: Received) -> JsonResponse:
    """PS3.18 10.5.3 STOW-RS response: one ReferencedSOPSequence item per instance
    taken (stored, or kept waiting for a clinician to name the patient), one FailedSOPSequence item
    per instance refused with its FailureReason; 200, 202 (some refused) or 409 (none taken). The
    reasons in words go in Warning headers (PS3.18 8.3.5.1: 299 with the service's name). No
    RetrieveURL: the portal serves no WADO-RS to retrieve them from."""
    body: dict[str, Any] = {}
    if received.instances:
        body["00081199"] = {"vr": "SQ", "Value": [_reference(*uids) for uids in received.instances]}
    if received.refused:
        body["00081198"] = {"vr": "SQ", "Value": [_failure(refusal) for refusal in received.refused]}
    status = 409 if not received.instances else 202 if received.refused else 200
    response = JsonResponse(body, status=status, content_type=DICOM_JSON)
    warnings = [f'299 LungPortal "{_header_text(refusal.reason)}"' for refusal in received.refused[:20]]
    if warnings:
        response["Warning"] = ", ".join(warnings)
    return response


def _reference(sop_class: str, sop_instance: str) -> dict[str, Any]:
    return {
        "00081150": {"vr": "UI", "Value": [sop_class]},
        "00081155": {"vr": "UI", "Value": [sop_instance]},
    }


def _failure(refusal: Refusal) -> dict[str, Any]:
    item: dict[str, Any] = {
        key: {"vr": "UI", "Value": [uid]}
        for key, uid in (("00081150", refusal.sop_class_uid), ("00081155", refusal.sop_instance_uid))
        if uid
    }
    item["00081197"] = {"vr": "US", "Value": [int(refusal.failure)]}
    return item


def _header_text(text: str) -> str:
    """A reason fit for an HTTP header: one line of printable ASCII, no quotes, not too long."""
    plain = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "?" for c in text.replace("×", "x"))
    return plain[:300]
