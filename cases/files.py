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
from pacs.pixels import hounsfield_from_png
from pacs.services import result_export_bytes

from .models import Prediction, Slice, SliceResult
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


def slice_hounsfield_response(item: Slice) -> FileResponse | JsonResponse:
    """A DICOM slice's Hounsfield units for the viewer's window/level: little-endian int16, rows
    of `width` values (decoded here from the stored 16-bit PNG, which is checked first)."""
    if not item.hounsfield:
        raise Http404("This slice has no Hounsfield units (it was not a DICOM image).")
    content = _file_bytes(item.hounsfield.name)
    if not slice_intact(item, content, use="served (its Hounsfield file)", expected=item.hounsfield_sha256):
        return error_response(TAMPERED_MESSAGE, status=409)
    trail.read(item, object_type="hounsfield")
    values = hounsfield_from_png(content).astype("<i2").tobytes()
    return _private_response(io.BytesIO(values), "application/octet-stream", f"slice-{item.pk}-hu.i16")


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


def _private_response(
    handle: object, content_type: str, download_name: str, *, disposition: str = "inline"
) -> FileResponse:
    response = FileResponse(handle, content_type=content_type)
    # Our own name, never the client's; inline so that browsers show the image.
    response["Content-Disposition"] = f'{disposition}; filename="{download_name}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


def structured_report_response(prediction: Prediction) -> FileResponse | JsonResponse:
    """The prediction's DICOM SR as a Part 10 download (404 for a study that did not come as DICOM,
    409 while the prediction has no result)."""
    if not prediction.scan.is_dicom:
        raise Http404("This study did not come as DICOM: it has no DICOM Structured Report.")
    if prediction.status != Prediction.Status.SUCCEEDED:
        return error_response(
            "The prediction has no result yet; its report follows when it succeeds.", status=409
        )
    trail.read(prediction, object_type="structured_report")
    return _private_response(
        io.BytesIO(result_export_bytes(prediction)),
        "application/dicom",
        f"prediction-{prediction.pk}-sr.dcm",
        disposition="attachment",
    )
