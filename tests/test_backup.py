"""`manage.py backup` and `manage.py restore`: a portal holding studies, results, reviews, waiting
DICOM and audit entries is backed up, restored into a fresh data dir and a fresh database of the
configured engine, started, and checked file by file and row by row; a corrupted backup fails."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from django.apps import apps
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from audit.models import AuditEntry
from cases.models import Prediction, Scan, SliceResult
from cases.services import backup as backup_service
from cases.services import review_submit, scan_upload
from cases.services.storage import file_save
from pacs.ingest import study_upload
from pacs.receiving import studies_receive
from pacs.services import result_export_enqueue
from tests.conftest import ROOT, image_bytes, upload
from tests.pacs.series import ct_series

pytestmark = pytest.mark.django_db(transaction=True)

# Run in the restored portal: its rows, every slice file against its stored hash, and pages,
# files and the SR served by the restored portal to a clinician.
RESTORED_CHECK = """
import hashlib, json
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.files.storage import default_storage
from django.test import Client
from cases.models import Prediction, Slice, SliceResult
from pacs.models import UnmatchedSeries
from pacs.services import result_export_bytes

counts = {
    m._meta.label: m._base_manager.count()
    for m in apps.get_models(include_auto_created=True) if m._meta.managed and not m._meta.proxy
}
checked, differing = 0, []
for item in Slice.objects.all():
    pairs = [(item.image.name, item.sha256)]
    if item.hounsfield:
        pairs.append((item.hounsfield.name, item.hounsfield_sha256))
    for name, expected in pairs:
        with default_storage.open(name, "rb") as handle:
            checked += 1
            if hashlib.sha256(handle.read()).hexdigest() != expected:
                differing.append(name)
heatmaps = [r.heatmap.name for r in SliceResult.objects.exclude(heatmap="")]
missing = [name for name in heatmaps if not default_storage.exists(name)]
waiting = [len(default_storage.listdir(u.folder)[1]) for u in UnmatchedSeries.objects.all()]
client = Client()
client.force_login(get_user_model().objects.get(username="alice"))
urls = ["/"] + [s.get_absolute_url() for s in Slice.objects.all()]
urls += [p.scan.get_absolute_url() for p in Prediction.objects.all()]
urls += ["/files/heatmaps/%d/" % r.pk for r in SliceResult.objects.exclude(heatmap="")]
pages = {url: client.get(url).status_code for url in urls}
sr = [len(result_export_bytes(p)) for p in Prediction.objects.filter(export__isnull=False)]
print(json.dumps({"counts": counts, "checked": checked, "differing": differing, "missing": missing,
                  "waiting": waiting, "pages": pages, "sr": sr}))
"""


def model_counts() -> dict[str, int]:
    return {
        model._meta.label: model._base_manager.count()
        for model in apps.get_models(include_auto_created=True)
        if model._meta.managed and not model._meta.proxy
    }


def finish(prediction: Prediction) -> Prediction:
    """A succeeded prediction as a worker leaves it, with a heatmap file for its first slice
    (as tests/pacs/test_structured_report.py's `finished_prediction`)."""
    for position, item in enumerate(prediction.scan.slices.order_by("position")):
        SliceResult.objects.create(
            prediction=prediction,
            slice=item,
            label="malignant",
            p_normal=0.1,
            p_benign=0.2,
            p_malignant=0.7,
            heatmap=file_save("heatmaps", "png", image_bytes()) if position == 0 else "",
        )
    Prediction.objects.filter(pk=prediction.pk).update(
        status=Prediction.Status.SUCCEEDED,
        label="malignant",
        p_normal=0.1,
        p_benign=0.2,
        p_malignant=0.7,
        suspicion=0.83,
        suspicious_slices=1,
        finding="Suspicious for malignancy.",
        finished_at=timezone.now(),
    )
    prediction.refresh_from_db()
    return prediction


@pytest.fixture
def portal(monkeypatch, alice, team_a, patient):
    """Two studies (PNG slices; a DICOM series with Hounsfield files), both finished with a
    heatmap, an SR record and a review each, and a DICOM series waiting for its patient."""
    monkeypatch.setattr("cases.services.predictions.prediction_enqueue", lambda **kwargs: None)
    images = scan_upload(
        patient=patient,
        files=[upload("a.png", image_bytes()), upload("b.png", image_bytes(size=(80, 80)))],
        uploaded_by=alice,
    )
    hounsfield = [np.linspace(-1000, 400 + i, 64 * 64).astype(np.int16).reshape(64, 64) for i in range(3)]
    files = [
        upload(name, data, "application/dicom")
        for name, data in ct_series(hounsfield, patient_id=patient.mrn)
    ]
    (dicom,) = study_upload(patient=patient, files=files, uploaded_by=alice, confirm_patient=True)
    for scan in (images, dicom):
        prediction = finish(scan.predictions.get())
        review_submit(prediction=prediction, reviewer=alice, verdict="agree")
    result_export_enqueue(Prediction.objects.get(scan=dicom))
    stranger = ct_series(hounsfield[:2], patient_id="NEW-7", patient_name="Doe^John", series_number=5)
    studies_receive(team=team_a, files=stranger, via=Scan.Received.STOW, sender="CT-ROUTER")
    return [images, dicom]


@pytest.fixture
def fresh_portal(tmp_path) -> Iterator[Callable[[str], dict[str, str]]]:
    """Environments for a new, empty portal of the configured engine: a data dir (and, on
    PostgreSQL, a new empty database, dropped afterwards)."""
    created: list[str] = []

    def make(name: str) -> dict[str, str]:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "lungportal.settings"}
        for variable in ("LUNGPORTAL_MEDIA_ROOT", "DICOM_INBOX_DIR", "LUNGPORTAL_TEST_DB_NAME", "REDIS_URL"):
            env.pop(variable, None)
        env["LUNGPORTAL_DATA_DIR"] = str(tmp_path / name)
        if connection.vendor == "postgresql":
            database = f"{connection.settings_dict['NAME']}_{name}_{uuid.uuid4().hex[:8]}"
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{database}"')
            created.append(database)
            env["DATABASE_URL"] = urlsplit(os.environ["DATABASE_URL"])._replace(path=f"/{database}").geturl()
        else:
            env.pop("DATABASE_URL", None)  # SQLite: db.sqlite3 in the new data dir
        return env

    yield make
    for database in created:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_backup_restores_into_an_empty_portal_that_serves_every_file_and_row(
    portal, tmp_path, private_media, fresh_portal
):
    before = model_counts()
    backup = tmp_path / "backup"
    call_command("backup", to=backup)

    manifest = json.loads((backup / "manifest.json").read_text())
    assert manifest["counts"] == before and manifest["problems"] == []
    assert manifest["database"]["engine"] == connection.vendor
    assert manifest["database"]["tool"].startswith(
        "pg_dump" if connection.vendor == "postgresql" else "sqlite3"
    )
    database = backup / manifest["database"]["file"]
    assert manifest["database"]["sha256"] == file_sha256(database)
    assert manifest["migrations"]["cases"] and manifest["portal"]["commit"]
    originals = {
        f"media/{path.relative_to(private_media).as_posix()}": path
        for path in private_media.rglob("*")
        if path.is_file()
    }
    assert set(manifest["files"]) == set(originals)
    assert {prefix for key in originals for prefix in [key.split("/")[1]]} >= {
        "slices",
        "thumbs",
        "heatmaps",
        "incoming",
    }
    for key, path in originals.items():
        assert manifest["files"][key] == {"sha256": file_sha256(path), "size": path.stat().st_size}
        assert file_sha256(backup / key) == file_sha256(path)
    for path in [backup, *backup.rglob("*")]:
        assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600), path
    assert AuditEntry.objects.filter(action="create", object_type="backup", outcome="ok").count() == 1
    with pytest.raises(CommandError, match="not an empty folder"):
        call_command("backup", to=backup)

    env = fresh_portal("restored")
    restored = manage(env, "restore", "--from", str(backup))
    assert restored.returncode == 0, restored.stderr + restored.stdout
    assert "verified" in restored.stdout
    checked = manage(env, "check", "--database", "default")
    assert checked.returncode == 0, checked.stderr
    assert manage(env, "migrate", "--check").returncode == 0  # nothing left to migrate
    run = manage(env, "shell", "-c", RESTORED_CHECK)
    assert run.returncode == 0, run.stderr
    found = json.loads(run.stdout.strip().splitlines()[-1])

    # The restore's own audit entry is the one row more.
    assert found["counts"] == {**before, "audit.AuditEntry": before["audit.AuditEntry"] + 1}
    assert found["checked"] == 2 + 3 * 2 and found["differing"] == [] and found["missing"] == []
    assert found["waiting"] == [2]
    assert set(found["pages"].values()) == {200}, found["pages"]
    assert len(found["pages"]) == 1 + 5 + 2 + 2 and len(found["sr"]) == 1 and found["sr"][0] > 0
    restored_media = Path(env["LUNGPORTAL_DATA_DIR"]) / "media"
    for key, path in originals.items():
        assert file_sha256(restored_media / key.removeprefix("media/")) == file_sha256(path)

    again = manage(env, "restore", "--from", str(backup))
    assert again.returncode != 0 and "is not empty" in again.stderr


def test_restore_of_a_corrupted_backup_exits_non_zero_naming_the_files(portal, tmp_path, fresh_portal):
    backup = tmp_path / "backup"
    call_command("backup", to=backup)
    slice_file = f"media/{portal[0].slices.get(position=0).image.name}"
    heatmap = f"media/{SliceResult.objects.exclude(heatmap='').earliest('pk').heatmap.name}"
    corrupted = tmp_path / "corrupted-backup"
    shutil.copytree(backup, corrupted)
    data = bytearray((corrupted / slice_file).read_bytes())
    data[len(data) // 2] ^= 0x01
    (corrupted / slice_file).write_bytes(bytes(data))
    (corrupted / heatmap).unlink()

    result = manage(fresh_portal("corrupted"), "restore", "--from", str(corrupted))

    assert result.returncode != 0
    assert f"mismatch: {slice_file}: SHA-256" in result.stderr
    assert f"mismatch: {slice_file}: slice " in result.stderr  # the slice's own hash agrees
    assert f"mismatch: {heatmap}: listed in the manifest but missing" in result.stderr
    assert f"mismatch: {heatmap}: named by a row but missing" in result.stderr
    assert "4 mismatch(es)" in result.stderr


def test_backup_of_a_media_file_no_longer_matching_its_slice_hash_says_so(portal, tmp_path):
    item = portal[0].slices.get(position=1)
    with default_storage.open(item.image.name, "wb") as handle:
        handle.write(image_bytes(size=(70, 70)))

    with pytest.raises(CommandError, match="problem"):
        call_command("backup", to=tmp_path / "backup")

    manifest = json.loads((tmp_path / "backup" / "manifest.json").read_text())
    assert manifest["problems"] == [
        f"media/{item.image.name}: SHA-256 differs from the one recorded at upload"
    ]
    assert AuditEntry.objects.filter(object_type="backup", outcome="failed").exists()


def test_a_file_changed_while_it_is_copied_is_copied_again(db, tmp_path, private_media, monkeypatch):
    source = private_media / "incoming" / "2026" / "05" / "x" / "00000.dcm"
    source.parent.mkdir(parents=True)
    source.write_bytes(b"first")
    copy_hashing = backup_service._copy_hashing
    calls: list[dict[str, object]] = []

    def changing(reader, writer):
        copied = copy_hashing(reader, writer)
        if not calls:  # a writer finishes the file just after the first copy read it
            source.write_bytes(b"first and last")
        calls.append(copied)
        return copied

    monkeypatch.setattr(backup_service, "_copy_hashing", changing)
    call_command("backup", to=tmp_path / "backup")

    key = "media/incoming/2026/05/x/00000.dcm"
    assert len(calls) == 2 and (tmp_path / "backup" / key).read_bytes() == b"first and last"
    manifest = json.loads((tmp_path / "backup" / "manifest.json").read_text())
    assert manifest["files"][key] == {"sha256": hashlib.sha256(b"first and last").hexdigest(), "size": 14}
