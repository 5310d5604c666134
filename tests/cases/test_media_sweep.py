"""Files no row references (a killed run's heatmaps) are reported, and removed only when asked."""

import io
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.storage import default_storage
from django.core.management import call_command

from audit.models import AuditEntry
from cases import services, tasks
from cases.services.storage import file_save
from tests.conftest import image_bytes


def age(name: str, hours: float = 2) -> None:
    """Make a stored file look `hours` old."""
    then = time.time() - hours * 3600
    os.utime(Path(settings.MEDIA_ROOT) / name, (then, then))


@pytest.fixture
def media(scan, slice_result):
    """Referenced files (all old), an old orphan heatmap and a young one a run may still commit."""
    referenced = [name for item in scan.slices.all() for name in (item.image.name, item.thumbnail.name)]
    referenced.append(slice_result.heatmap.name)
    for name in referenced:
        age(name)
    old_orphan = file_save("heatmaps", "png", image_bytes())
    age(old_orphan)
    young_orphan = file_save("heatmaps", "png", image_bytes())
    return {"referenced": referenced, "old_orphan": old_orphan, "young_orphan": young_orphan}


def exists(name: str) -> bool:
    return default_storage.exists(name)


def test_report_finds_the_old_unreferenced_heatmap_and_removes_nothing(media):
    report = services.media_sweep(remove=False)

    assert report.orphans == (media["old_orphan"],)
    assert report.orphan_bytes == default_storage.size(media["old_orphan"])
    assert report.removed == 0
    assert report.scanned == len(media["referenced"]) + 2 and report.young == 1
    assert all(exists(name) for name in [*media["referenced"], media["old_orphan"], media["young_orphan"]])


def test_remove_deletes_only_old_orphans(media):
    report = services.media_sweep(remove=True)

    assert report.orphans == (media["old_orphan"],) and report.removed == 1
    assert not exists(media["old_orphan"])
    assert exists(media["young_orphan"])
    assert all(exists(name) for name in media["referenced"])


def test_a_shorter_grace_period_includes_younger_files(media):
    report = services.media_sweep(remove=False, older_than=timedelta(0))
    assert set(report.orphans) == {media["old_orphan"], media["young_orphan"]}


def test_each_sweep_leaves_one_audit_entry_with_the_counts(media):
    services.media_sweep(remove=False)
    services.media_sweep(remove=True)

    report, removal = AuditEntry.objects.filter(action="sweep").order_by("id")
    assert (report.outcome, report.channel, report.user, report.object_type) == (
        "ok",
        "system",
        None,
        "media",
    )
    assert "1 referenced by no row" in report.detail and "0 removed" in report.detail
    assert "1 removed" in removal.detail
    assert media["old_orphan"] not in report.detail  # counts, not names


def test_sweep_of_an_empty_media_folder_reports_nothing(db):
    report = services.media_sweep(remove=True)
    assert (report.scanned, report.orphans, report.removed) == (0, (), 0)
    assert AuditEntry.objects.filter(action="sweep").count() == 1


def test_command_reports_then_removes_with_the_flag(media):
    out = io.StringIO()
    call_command("sweep_media", stdout=out)
    assert f"orphan {media['old_orphan']}" in out.getvalue() and "--remove" in out.getvalue()
    assert media["young_orphan"] not in out.getvalue()
    assert exists(media["old_orphan"])

    out = io.StringIO()
    call_command("sweep_media", "--remove", "--grace-minutes", "0", stdout=out)
    assert f"removed {media['old_orphan']}" in out.getvalue()
    assert f"removed {media['young_orphan']}" in out.getvalue()
    assert not exists(media["old_orphan"]) and not exists(media["young_orphan"])
    assert all(exists(name) for name in media["referenced"])


def test_periodic_task_reports_without_removing(media):
    assert tasks.media_sweep() == 1
    assert exists(media["old_orphan"])
    assert AuditEntry.objects.filter(action="sweep").count() == 1


def test_the_sweep_is_scheduled_daily():
    entry = settings.CELERY_BEAT_SCHEDULE["report-orphan-media"]
    assert entry["task"] == "cases.tasks.media_sweep" and entry["schedule"] == timedelta(days=1)
