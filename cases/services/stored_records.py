"""Bringing records stored before today's upload rules up to them: a slice kept as uploaded
(metadata, trailing bytes) gets the metadata-free PNG copy that uploads now store, and failure
reasons lose the server paths they used to carry.

New uploads need none of this; `manage.py restore_stored_records` runs it once after upgrading.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from django.core.files.storage import default_storage
from django.db import transaction

from audit import trail
from inference.preprocessing import ImageDecodeError

from ..models import Prediction, PredictionRun, Slice
from .prediction_runs import without_paths
from .storage import file_save, files_delete
from .uploads import slice_check


@dataclass
class RestoreReport:
    copied: int = 0
    reasons_cleaned: int = 0
    problems: list[str] = field(default_factory=list)


def stored_records_restore(*, apply: bool) -> RestoreReport:
    """Re-store legacy slices as clean copies and strip paths from failure reasons; with
    apply=False, only report what would change."""
    report = RestoreReport()
    for item in Slice.objects.filter(source_sha256="").select_related("scan").iterator():
        try:
            with default_storage.open(item.image.name, "rb") as handle:
                data = handle.read()
            checked = slice_check(io.BytesIO(data), name=item.original_name)
        except (OSError, ImageDecodeError) as exc:
            report.problems.append(f"slice {item.pk}: {without_paths(str(exc))}; left as it is")
            continue
        if checked.source_sha256 != item.sha256:
            report.problems.append(f"slice {item.pk}: its file does not match its SHA-256; left as it is")
            continue
        report.copied += 1
        if apply:
            checked.content.seek(0)
            _slice_restore(item, checked.content.read(), checked.sha256)
    for model in (Prediction, PredictionRun):
        for pk, error in model.objects.exclude(error="").values_list("pk", "error").iterator():
            if without_paths(error) != error:
                report.reasons_cleaned += 1
                if apply:
                    model.objects.filter(pk=pk).update(error=without_paths(error))
    return report


def _slice_restore(item: Slice, copy: bytes, copy_sha256: str) -> None:
    old_name = item.image.name
    new_name = file_save("slices", "png", copy)
    try:
        with transaction.atomic():
            Slice.objects.filter(pk=item.pk).update(
                image=new_name, content_type="image/png", sha256=copy_sha256, source_sha256=item.sha256
            )
            trail.record_object(
                trail.Action.CHANGE,
                item,
                changes={
                    "sha256": [item.sha256, copy_sha256],
                    "content_type": [item.content_type, "image/png"],
                },
                detail="stored again as a metadata-free PNG copy; the old hash is kept as source_sha256",
            )
            transaction.on_commit(lambda: files_delete([old_name]))
    except BaseException:
        files_delete([new_name])
        raise
