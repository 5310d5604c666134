"""DICOMweb STOW-RS: `POST /dicomweb/studies` with `multipart/related; type="application/dicom"`,
authenticated by an API token. The body is read as a stream with its own limit (never through
Django's in-memory body), its parts are read as DICOM, and the answer is DICOM JSON naming every
instance taken (ReferencedSOPSequence) or refused (FailedSOPSequence), as PACS expect."""

from __future__ import annotations

import email.parser
import email.policy
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import HttpRequest, JsonResponse
from rest_framework import renderers
from rest_framework.request import Request
from rest_framework.views import APIView

from cases import selectors
from cases.models import CareTeam, Scan
from core.http import error_response

from .reading import DicomRefused
from .receiving import studies_receive

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
        body = _body(raw, settings.DICOM_MAX_SERIES_BYTES)
        if body is None:
            return error_response(
                f"The request is larger than {settings.DICOM_MAX_SERIES_BYTES // (1024 * 1024)} MB; "
                "send the study in parts.",
                status=413,
            )
        files = _parts(content_type, body)
        if not files:
            if not body and "chunked" in raw.META.get("HTTP_TRANSFER_ENCODING", "").lower():
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
            )
        except DicomRefused as refused:
            return error_response(str(refused), status=409)
        except ValidationError as refused:  # e.g. an implausible study date
            return error_response(" ".join(refused.messages), status=409)
        return JsonResponse(_answer(raw, received.instances), content_type=DICOM_JSON)


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


def _body(request: HttpRequest, limit: int) -> bytes | None:
    """The body, or None past `limit` (what was sent is read to its end, so the client gets our answer)."""
    stream = _stream(request)
    chunks, size = [], 0
    while chunk := stream.read(READ_CHUNK):
        size += len(chunk)
        if size > limit:
            _drain(stream)
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _drain(stream: Any) -> None:
    while stream.read(READ_CHUNK):  # leftover body bytes would break the client's connection
        pass


def _drained(request: HttpRequest, response: JsonResponse) -> JsonResponse:
    _drain(_stream(request))
    return response


def _parts(content_type: str, body: bytes) -> list[tuple[str, bytes]]:
    """The application/dicom parts of a multipart/related body, as (name, bytes)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        return []
    files = []
    for number, part in enumerate(message.iter_parts(), start=1):
        payload = part.get_payload(decode=True)
        if part.get_content_type() == "application/dicom" and isinstance(payload, bytes):
            files.append((f"part {number}", payload))
    return files


def _answer(request: HttpRequest, instances: list[tuple[str, str]]) -> dict[str, Any]:
    """PS3.18 STOW-RS response: a RetrieveURL and one ReferencedSOPSequence item per instance
    taken (stored, or kept waiting for a clinician to name the patient)."""
    return {
        "00081190": {"vr": "UR", "Value": [request.build_absolute_uri("/dicomweb/studies")]},
        "00081199": {
            "vr": "SQ",
            "Value": [
                {
                    "00081150": {"vr": "UI", "Value": [sop_class]},
                    "00081155": {"vr": "UI", "Value": [sop_instance]},
                }
                for sop_class, sop_instance in instances
            ],
        },
    }
