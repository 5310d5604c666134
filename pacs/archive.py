"""A zip of DICOM files, unpacked with every limit counted while decompressing.

Each entry is spooled to an anonymous temporary file (gone when closed or dropped), so a request
holds one chunk in memory at a time, not the archive's contents. Entry names are only labels;
names that would be dangerous on a disk are refused anyway, because an archive carrying them is
not an honest export.
"""

from __future__ import annotations

import lzma
import re
import stat
import tempfile
import zipfile
import zlib
from io import BytesIO
from typing import IO

from pacs.reading import DicomRefused, Failure, RequestBudget, Source, size_text

_CHUNK = 64 * 1024
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_DRIVE = re.compile(r"^[A-Za-z]:")
# Entries that operating systems add to archives and that are never DICOM.
_JUNK_NAMES = {"DICOMDIR", ".DS_STORE", "THUMBS.DB", "DESKTOP.INI"}


def unpack_zip(
    data: Source, *, name: str, max_files: int, max_file_bytes: int, budget: RequestBudget
) -> list[tuple[str, IO[bytes]]]:
    """The files of a zip as (f"{name}:{entry}", a temporary file holding it); directories, a
    DICOMDIR and the operating system's own entries (__MACOSX/, .DS_Store, Thumbs.db) skipped.
    Raises DicomRefused for a damaged or encrypted zip, unsafe entry names, symlinks, nested zips,
    more than max_files files, or any entry past max_file_bytes or the request past its budget's
    bytes (every zip and file of the request counted together), counted while decompressing."""
    try:
        archive = zipfile.ZipFile(BytesIO(data) if isinstance(data, bytes) else data)
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        NotImplementedError,
        OSError,
        ValueError,
        EOFError,
    ) as error:
        raise DicomRefused(
            f"{name}: is not a zip file or is damaged ({error}). Zip the files again."
        ) from error
    with archive:
        entries = _entries(archive, name=name, max_files=max_files)
        files: list[tuple[str, IO[bytes]]] = []
        for info, entry in entries:
            content = _read(archive, info, label=f"{name}:{entry}", room=max_file_bytes, budget=budget)
            content.seek(0)
            head = content.read(4)
            content.seek(0)
            if head.startswith(_ZIP_MAGIC) or entry.lower().endswith(".zip"):
                raise DicomRefused(
                    f"{name}:{entry}: is a zip inside the zip; nested archives are not unpacked. "
                    "Put the DICOM files themselves in one zip."
                )
            files.append((f"{name}:{entry}", content))
    if not files:
        raise DicomRefused(
            f"{name}: holds no files (only folders or a DICOMDIR). Zip the DICOM files themselves."
        )
    return files


def _entries(archive: zipfile.ZipFile, *, name: str, max_files: int) -> list[tuple[zipfile.ZipInfo, str]]:
    """Every entry's name checked before anything is decompressed; the files to read, in order."""
    wanted: list[tuple[zipfile.ZipInfo, str]] = []
    seen: set[str] = set()
    for info in archive.infolist():
        entry = _safe_name(info.filename, name=name)
        label = f"{name}:{entry}"
        if info.flag_bits & 0x1:
            raise DicomRefused(
                f"{label}: is encrypted; the portal does not take password-protected zips. Zip the files "
                "again without a password."
            )
        if _is_symlink(info):
            raise DicomRefused(f"{label}: is a symbolic link; zip the files themselves, not links to them.")
        if info.is_dir() or _is_junk(entry):
            continue
        if entry in seen:
            raise DicomRefused(
                f"{label}: appears twice in the zip; the archive is damaged. Zip the files again."
            )
        seen.add(entry)
        wanted.append((info, entry))
        if len(wanted) > max_files:
            raise DicomRefused(
                f"{name}: holds more than {max_files} files, the most one upload may have. Upload the "
                "study's series in several parts."
            )
    return wanted


def _safe_name(raw: str, *, name: str) -> str:
    entry = raw.replace("\\", "/")  # some Windows tools write backslashes; treat them as separators
    parts = entry.split("/")
    if (
        not raw
        or entry.startswith("/")
        or _DRIVE.match(entry)
        or ".." in parts
        or any(ord(char) < 32 for char in entry)
    ):
        raise DicomRefused(
            f"{name}: has an entry with an unsafe name ({raw!r}: absolute, or climbing out with '..'); "
            "the portal refuses such archives. Zip the study folder again with relative names."
        )
    return "/".join(part for part in parts if part not in ("", "."))


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    mode = info.external_attr >> 16
    return info.create_system == 3 and stat.S_ISLNK(mode)


def _is_junk(entry: str) -> bool:
    base = entry.rsplit("/", 1)[-1]
    return entry.startswith("__MACOSX/") or base.upper() in _JUNK_NAMES or base.startswith("._")


def _read(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, *, label: str, room: int, budget: RequestBudget
) -> IO[bytes]:
    """The entry in a temporary file, refused as soon as it (or the request so far) passes a
    limit: the declared sizes are never trusted, so a zip bomb costs at most one chunk past it."""
    spooled = tempfile.TemporaryFile()
    try:
        _copy(archive, info, spooled, label=label, room=room, budget=budget)
    except BaseException:
        spooled.close()
        raise
    return spooled


def _copy(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    spooled: IO[bytes],
    *,
    label: str,
    room: int,
    budget: RequestBudget,
) -> None:
    size = 0
    try:
        with archive.open(info) as stream:
            while chunk := stream.read(_CHUNK):
                size += len(chunk)
                if size > room:
                    raise DicomRefused(
                        f"{label}: unpacks to more than {size_text(room)}, the most one file may have. "
                        "Leave it out.",
                        failure=Failure.OUT_OF_RESOURCES,
                    )
                budget.take_bytes(label, len(chunk))
                spooled.write(chunk)
    except DicomRefused:  # a ValueError: let it through unwrapped
        raise
    except NotImplementedError as error:  # e.g. Deflate64, or an unknown method
        raise DicomRefused(
            f"{label}: uses a compression method the portal cannot unpack ({error}). Zip the files again "
            "with ordinary (deflate) compression."
        ) from error
    # RuntimeError: zipfile's "password required"; zlib.error/LZMAError/OSError: damaged streams;
    # BadZipFile: a bad CRC or header, including declared sizes that lie.
    except (
        zipfile.BadZipFile,
        zlib.error,
        lzma.LZMAError,
        OSError,
        EOFError,
        ValueError,
        RuntimeError,
    ) as error:
        raise DicomRefused(f"{label}: is damaged in the zip ({error}). Zip the files again.") from error
