"""Serving private uploads, for page and API views alike, once the viewer's team is checked.
Each file served is a read in the audit trail; a slice whose file no longer matches the SHA-256
recorded at upload is refused (409) and the mismatch recorded instead."""

from __future__ import annotations

import io

from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, JsonResponse

from audit import trail
from core.http import error_response
from inference.preprocessing import ACCEPTED_FORMATS

from .models import Slice, SliceResult
from .services.storage import slice_intact

_EXTENSIONS = dict(ACCEPTED_FORMATS.values())  # content type -> extension

TAMPERED_MESSAGE = (
    "This slice's stored file no longer matches the checksum recorded at upload, so it is not shown. "
    "An administrator has been alerted through the audit trail."
)


def slice_image_response(item: Slice) -> FileResponse | JsonResponse:
    extension = _EXTENSIONS.get(item.content_type, "jpg")
    # Slices are at most UPLOAD_MAX_FILE_BYTES: hashing them in memory before serving is cheap.
    content = _file_bytes(item.image.name)
    if not slice_intact(item, content, use="served"):
        return error_response(TAMPERED_MESSAGE, status=409)
    trail.read(item)
    return _private_response(io.BytesIO(content), item.content_type, f"slice-{item.pk}.{extension}")


def slice_thumbnail_response(item: Slice) -> FileResponse:
    trail.read(item, object_type="thumbnail")
    return _private_file_response(item.thumbnail.name, "image/png", f"slice-{item.pk}-thumb.png")


def heatmap_response(result: SliceResult) -> FileResponse:
    trail.read(result, object_type="heatmap")
    return _private_file_response(result.heatmap.name, "image/png", f"heatmap-{result.pk}.png")


def _file_bytes(name: str) -> bytes:
    try:
        with default_storage.open(name, "rb") as handle:
            data: bytes = handle.read()
    except (FileNotFoundError, ValueError):
        raise Http404("The file is missing.") from None
    return data


def _private_file_response(name: str, content_type: str, download_name: str) -> FileResponse:
    try:
        handle = default_storage.open(name, "rb")
    except (FileNotFoundError, ValueError):
        raise Http404("The file is missing.") from None
    return _private_response(handle, content_type, download_name)


def _private_response(handle: object, content_type: str, download_name: str) -> FileResponse:
    response = FileResponse(handle, content_type=content_type)
    # Our own name, never the client's; inline so that browsers show the image.
    response["Content-Disposition"] = f'inline; filename="{download_name}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response
