"""Serving private uploads: only through views that have already checked the viewer's team."""

from django.core.files.storage import default_storage
from django.http import FileResponse, Http404


def private_file_response(name: str, content_type: str, download_name: str) -> FileResponse:
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


def slice_file_name(item) -> str:  # type: ignore[no-untyped-def]
    extension = "png" if item.content_type == "image/png" else "jpg"
    return f"slice-{item.pk}.{extension}"
