"""Upload limits applied while a request body is read, not after: a body declaring more than
UPLOAD_MAX_REQUEST_BYTES is refused from its Content-Length alone, and a multipart body stops
being read as soon as one of its files passes UPLOAD_MAX_FILE_BYTES. Both are answered 413
(`cases.http.upload_too_large_response`)."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler
from django.http import HttpRequest, HttpResponseBase

from .http import UploadTooLarge, size_text, upload_too_large_response
from .services.uploads import display_name


class RequestSizeLimitMiddleware:
    """Answers 413 to a request whose declared body is over the cap, before anything reads it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:  # Django reads a malformed length as no body at all
            declared = 0
        if declared > settings.UPLOAD_MAX_REQUEST_BYTES:
            return upload_too_large_response(request)
        return self.get_response(request)


class FileSizeLimitUploadHandler(FileUploadHandler):
    """First of FILE_UPLOAD_HANDLERS: passes each file's chunks on to the handlers that keep them
    until the file passes UPLOAD_MAX_FILE_BYTES, then stops the whole body being read. Raising
    (rather than StopUpload, which would hand the view a silently shortened upload) ends the
    request in the project's 400 handler, which answers UploadTooLarge with 413."""

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        limit = settings.UPLOAD_MAX_FILE_BYTES
        if start + len(raw_data) > limit:
            raise UploadTooLarge(
                f"{display_name(self.file_name)}: the file is larger than the {size_text(limit)} limit; "
                "nothing was stored"
            )
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the next handler makes the uploaded file
