"""Patient data on disk (the SQLite database, stored slices, DICOM files with their full headers)
is readable by the portal's own user only: files 0600, folders 0700, whatever the umask."""

import os
import stat
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse

from cases.services.storage import file_save
from tests.conftest import image_bytes, upload
from tests.private_files import FILE_MODE, FOLDER_MODE, assert_private_tree
from tests.test_settings import manage


@pytest.fixture
def usual_umask():
    """The umask most systems start processes with: files 0644 and folders 0755 unless told."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_an_uploaded_study_is_stored_in_private_files_and_folders(
    usual_umask, logged_in, patient, private_media, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks():
        response = logged_in.post(
            reverse("cases:scan_upload", args=[patient.pk]),
            {"files": [upload("a.png", image_bytes()), upload("b.jpg", image_bytes("JPEG"), "image/jpeg")]},
        )
    assert response.status_code == 302
    assert_private_tree(private_media)


def test_files_the_services_and_receivers_write_are_private(usual_umask, private_media):
    names = [
        file_save("heatmaps", "png", image_bytes()),  # a worker's heatmap, a DICOM SR
        default_storage.save("incoming/2026/01/series/00000.dcm", ContentFile(b"DICM")),  # a waiting series
    ]
    assert all(mode(Path(default_storage.path(name))) == FILE_MODE for name in names)
    assert_private_tree(private_media)


def test_the_data_directory_and_the_sqlite_database_are_private(usual_umask, tmp_path):
    data = tmp_path / "data"
    database = data / "db.sqlite3"
    result = manage(
        "migrate",
        "--noinput",
        LUNGPORTAL_DATA_DIR=str(data),
        DATABASE_URL=f"sqlite:///{database}",  # never the database of a PostgreSQL run
        REDIS_URL="",
    )
    assert result.returncode == 0, result.stderr
    assert mode(data) == FOLDER_MODE
    assert mode(database) == FILE_MODE and database.stat().st_size > 0
    for journal in (data / "db.sqlite3-wal", data / "db.sqlite3-shm"):
        assert not journal.exists() or mode(journal) == FILE_MODE
    assert mode(data / "secret_key") == FILE_MODE


def test_an_existing_data_directory_and_database_are_made_private(usual_umask, tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    database = data / "db.sqlite3"
    database.touch(mode=0o644)
    result = manage(
        "check", LUNGPORTAL_DATA_DIR=str(data), DATABASE_URL=f"sqlite:///{database}", REDIS_URL=""
    )
    assert result.returncode == 0, result.stderr
    assert (mode(data), mode(database)) == (FOLDER_MODE, FILE_MODE)


def test_a_media_folder_shared_elsewhere_is_made_private_too(usual_umask, tmp_path):
    media = tmp_path / "media"
    (media / "slices").mkdir(parents=True, mode=0o755)
    media.chmod(0o755)  # an upgrade: stored under the old umask
    result = manage(
        "check",
        LUNGPORTAL_DATA_DIR=str(tmp_path / "data"),
        LUNGPORTAL_MEDIA_ROOT=str(media),
        DATABASE_URL=f"sqlite:///{tmp_path / 'data' / 'db.sqlite3'}",
        REDIS_URL="",
    )
    assert result.returncode == 0, result.stderr
    assert mode(media) == FOLDER_MODE  # what lies below is out of others' reach from here
