"""Serving private uploads, for page and API views alike, once the viewer's team is checked.
Each file served is a read in the audit trail."""

from django.core.files.storage import default_storage
from django.http import FileResponse, Http404

from audit import trail
from inference.preprocessing import ACCEPTED_FORMATS

from .models import Slice, SliceResult

_EXTENSIONS = dict(ACCEPTED_FORMATS.values())  # content type -> extension


def slice_image_response(item: Slice) -> FileResponse:
    extension = _EXTENSIONS.get(item.content_type, "jpg")
    trail.read(item)
    return _private_file_response(item.image.name, item.content_type, f"slice-{item.pk}.{extension}")


def slice_thumbnail_response(item: Slice) -> FileResponse:
    trail.read(item, object_type="thumbnail")
    return _private_file_response(item.thumbnail.name, "image/png", f"slice-{item.pk}-thumb.png")


def heatmap_response(result: SliceResult) -> FileResponse:
    trail.read(result, object_type="heatmap")
    return _private_file_response(result.heatmap.name, "image/png", f"heatmap-{result.pk}.png")


def _private_file_response(name: str, content_type: str, download_name: str) -> FileResponse:
    try:
        handle = default_storage.open(name, "rb")
    except (FileNotFoundError, ValueError):
        raise Http404("The file is missing.") from None
    response = FileResponse(handle, content_type=content_type)
    # Our own name, never the client's; inline so that browsers show the image.
    response["Content-Disposition"] = f'inline; filename="{download_name}"'
    response["Cache-Control"] = "private, max-age=3600"
    response["X-Content-Type-Options"] = "nosniff"
    return response
