"""Files in private media that no row references: reported, and removed only when asked.

They come from work that stopped between writing a file and committing its row (a killed worker's
heatmaps, an upload interrupted past its clean-up). Young files are left alone: a running worker
writes its heatmaps before it commits the results that reference them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

from django.core.files.storage import default_storage
from django.utils import timezone

from audit import trail

from ..models import Slice, SliceResult

# Every folder `file_save` writes to.
MEDIA_FOLDERS = ("slices", "thumbs", "heatmaps")
# Longer than any run may last (CELERY_TASK_TIME_LIMIT, 10 minutes by default).
DEFAULT_GRACE = timedelta(hours=1)


@dataclass(frozen=True)
class SweepReport:
    scanned: int
    young: int
    orphans: tuple[str, ...] = ()
    orphan_bytes: int = 0
    removed: int = 0
    older_than: timedelta = DEFAULT_GRACE

    def summary(self) -> str:
        minutes = int(self.older_than.total_seconds() // 60)
        return (
            f"{self.scanned} files in {', '.join(MEDIA_FOLDERS)}: {len(self.orphans)} referenced by no row "
            f"({self.orphan_bytes} bytes), {self.removed} removed; {self.young} younger than {minutes} "
            "minutes left unchecked."
        )


def media_sweep(*, remove: bool, older_than: timedelta = DEFAULT_GRACE) -> SweepReport:
    """Find the files under MEDIA_FOLDERS that no slice or slice result names, older than
    `older_than`; delete them only with `remove`. One audit entry records the counts."""
    cutoff = timezone.now() - older_than
    scanned, young = 0, 0
    candidates: list[str] = []
    for name in _stored_files():
        scanned += 1
        try:
            if default_storage.get_modified_time(name) > cutoff:
                young += 1
                continue
        except FileNotFoundError:  # removed meanwhile (a failed run's clean-up, a purge)
            continue
        candidates.append(name)
    # Read the references after listing: a row committed meanwhile is then seen.
    referenced = _referenced_names()
    orphans = tuple(name for name in candidates if name not in referenced)
    orphan_bytes = sum(_size(name) for name in orphans)
    if remove:
        for name in orphans:
            default_storage.delete(name)
    report = SweepReport(
        scanned=scanned,
        young=young,
        orphans=orphans,
        orphan_bytes=orphan_bytes,
        removed=len(orphans) if remove else 0,
        older_than=older_than,
    )
    trail.record(trail.Action.SWEEP, object_type="media", detail=report.summary())
    return report


def _stored_files(folder: str = "") -> Iterator[str]:
    """Every file name under MEDIA_FOLDERS (or under `folder`), as storage names."""
    for top in [folder] if folder else MEDIA_FOLDERS:
        try:
            directories, files = default_storage.listdir(top)
        except FileNotFoundError:  # nothing written there yet
            continue
        for name in sorted(files):
            yield f"{top}/{name}"
        for directory in sorted(directories):
            yield from _stored_files(f"{top}/{directory}")


def _referenced_names() -> set[str]:
    names: set[str] = set()
    for image, thumbnail in Slice.objects.values_list("image", "thumbnail").iterator():
        names.update((image, thumbnail))
    names.update(SliceResult.objects.exclude(heatmap="").values_list("heatmap", flat=True).iterator())
    return names


def _size(name: str) -> int:
    try:
        return default_storage.size(name)
    except FileNotFoundError:
        return 0
