"""Patient data on disk is the portal's alone: its folders 0700, its files 0600.

The data directory holds the SQLite database (names, MRNs, readings) and, by default, the media
folder (slices, and DICOM files with their full headers); Django's storage makes new media files
and folders with FILE_UPLOAD_PERMISSIONS and FILE_UPLOAD_DIRECTORY_PERMISSIONS. What is made here
at start-up is made private too, and one made earlier under a looser umask is tightened."""

from __future__ import annotations

import os
from pathlib import Path

FILE_MODE = 0o600
DIRECTORY_MODE = 0o700


def private_directory(path: Path) -> None:
    """Create `path` (and any missing parents) 0700, or take group and other access away."""
    path.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
    _tighten(path)


def private_file(path: Path) -> None:
    """Create `path` empty and 0600 if it is missing (SQLite takes an empty file for a new
    database and gives its -wal and -shm files the database's mode), or tighten it."""
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, FILE_MODE))
    _tighten(path)


def _tighten(path: Path) -> None:
    # Only what this user owns: a folder that an administrator mounted for us is theirs to set.
    status = path.stat()
    if status.st_mode & 0o077 and status.st_uid == os.geteuid():
        path.chmod(status.st_mode & 0o700)
