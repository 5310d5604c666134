"""Unpacking uploaded zips of DICOM files: what is taken, and every kind of hostile archive refused."""

from __future__ import annotations

import stat
import struct
import zipfile
from io import BytesIO

import numpy as np
import pytest

from pacs.archive import unpack_zip
from pacs.reading import DicomRefused, RequestBudget, read_series
from tests.pacs.series import ct_series

MB = 1024 * 1024
LIMITS = {"max_files": 10, "max_bytes": 10 * MB, "max_file_bytes": 5 * MB}


def unpack(data: bytes, *, name: str, max_bytes: int, **limits: int) -> list[tuple[str, bytes]]:
    """unpack_zip with a fresh request budget of `max_bytes`, its temporary files read back."""
    files = unpack_zip(data, name=name, budget=RequestBudget(max_bytes=max_bytes), **limits)
    return [(label, spooled.read()) for label, spooled in files]


def make_zip(
    entries: list[tuple[str | zipfile.ZipInfo, bytes]], compression: int = zipfile.ZIP_DEFLATED
) -> bytes:
    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for entry, data in entries:
            archive.writestr(entry, data)
    return buffer.getvalue()


def refusal(data: bytes, **limits: int) -> str:
    with pytest.raises(DicomRefused) as caught:
        unpack(data, name="study.zip", **{**LIMITS, **limits})
    return str(caught.value)


def series_files() -> list[tuple[str, bytes]]:
    return ct_series([np.full((64, 64), g, dtype=np.uint8) for g in (10, 20, 30)], shuffle=True)


def test_good_zip_gives_its_files_named_after_the_archive():
    files = series_files()
    data = make_zip(
        [
            (zipfile.ZipInfo("series1/"), b""),
            *[(f"series1/{name}", content) for name, content in files],
            ("DICOMDIR", b"not read"),
            ("__MACOSX/series1/._IM0001.dcm", b"AppleDouble"),
            ("series1/.DS_Store", b"Finder"),
        ]
    )

    unpacked = unpack(data, name="study.zip", **LIMITS)

    assert unpacked == [(f"study.zip:series1/{name}", content) for name, content in files]
    [series] = read_series(unpacked, max_slices=3)
    assert [i.name for i in series.instances] == [f"study.zip:series1/IM000{n}.dcm" for n in (1, 2, 3)]


def test_stored_and_backslash_separated_entries_are_taken():
    data = make_zip([("series1\\IM1.dcm", b"a"), ("./IM2.dcm", b"b")], compression=zipfile.ZIP_STORED)

    assert unpack(data, name="s.zip", **LIMITS) == [
        ("s.zip:series1/IM1.dcm", b"a"),
        ("s.zip:IM2.dcm", b"b"),
    ]


@pytest.mark.parametrize(
    "entry", ["../evil.dcm", "series/../../evil.dcm", "..\\evil.dcm", "a\\..\\..\\evil", ".."]
)
def test_entries_climbing_out_are_refused(entry):
    data = make_zip([("IM1.dcm", b"fine"), (entry, b"evil")])

    assert "has an entry with an unsafe name" in refusal(data)


@pytest.mark.parametrize(
    "entry", ["/etc/passwd", "C:/evil.dcm", "C:\\evil.dcm", "c:evil.dcm", "\\\\server\\share\\x"]
)
def test_absolute_entries_are_refused(entry):
    data = make_zip([("IM1.dcm", b"fine"), (entry, b"evil")])
    assert zipfile.ZipFile(BytesIO(data)).namelist()[1] == entry  # kept raw, as a hostile tool writes it

    assert "has an entry with an unsafe name" in refusal(data)


def test_symlink_entries_are_refused():
    link = zipfile.ZipInfo("series1/IM1.dcm")
    link.create_system = 3  # Unix
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    data = make_zip([(link, b"/etc/passwd")])

    assert refusal(data) == (
        "study.zip:series1/IM1.dcm: is a symbolic link; zip the files themselves, not links to them."
    )


def test_nested_zips_are_refused():
    inner = make_zip([("IM1.dcm", b"x")])

    by_name = refusal(make_zip([("IM0.dcm", b"y"), ("more.zip", inner)]))
    by_content = refusal(make_zip([("IM0.dcm", b"y"), ("IM2.dcm", inner)]))

    assert by_name.startswith("study.zip:more.zip: is a zip inside the zip")
    assert by_content.startswith("study.zip:IM2.dcm: is a zip inside the zip")


def set_encrypted_flag(data: bytes) -> bytes:
    """Mark every entry encrypted (general purpose bit 0) in its local and central headers."""
    patched = bytearray(data)
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (start := patched.find(signature, start)) >= 0:
            (flags,) = struct.unpack_from("<H", patched, start + offset)
            struct.pack_into("<H", patched, start + offset, flags | 0x1)
            start += 4
    return bytes(patched)


def test_encrypted_entries_are_refused():
    data = set_encrypted_flag(make_zip([("IM1.dcm", b"secret")]))
    assert zipfile.ZipFile(BytesIO(data)).infolist()[0].flag_bits & 0x1

    assert refusal(data).startswith("study.zip:IM1.dcm: is encrypted")


def test_too_many_files_are_refused_before_anything_is_unpacked():
    entries: list[tuple[str | zipfile.ZipInfo, bytes]] = [(f"IM{n}.dcm", b"x") for n in range(4)]

    assert "holds more than 3 files" in refusal(make_zip(entries), max_files=3)
    assert len(unpack(make_zip(entries), name="s.zip", **{**LIMITS, "max_files": 4})) == 4


def test_a_file_past_the_per_file_limit_is_refused():
    data = make_zip([("IM1.dcm", b"x" * 2000), ("IM2.dcm", b"y" * 10)])

    assert refusal(data, max_file_bytes=1999).startswith("study.zip:IM1.dcm: unpacks to more than 1999 bytes")


def test_the_total_past_the_limit_is_refused():
    data = make_zip([(f"IM{n}.dcm", bytes([n]) * 1000) for n in range(5)])

    message = refusal(data, max_bytes=4500)

    assert message.startswith("study.zip:IM4.dcm: the DICOM sent together passes 4500 bytes")


@pytest.fixture(scope="module")
def zip_bomb() -> bytes:
    """200 MB of zeros deflated to about 200 KB, written in pieces so that the test never holds it."""
    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        with archive.open("IM1.dcm", "w", force_zip64=True) as entry:
            zeros = bytes(MB)
            for _ in range(200):
                entry.write(zeros)
    return buffer.getvalue()


def count_decompressed(monkeypatch) -> list[int]:
    counted = [0]
    original = zipfile.ZipExtFile.read

    def read(self, n=-1):
        chunk = original(self, n)
        counted[0] += len(chunk)
        return chunk

    monkeypatch.setattr(zipfile.ZipExtFile, "read", read)
    return counted


def test_zip_bomb_is_refused_after_unpacking_little_more_than_the_limit(zip_bomb, monkeypatch):
    assert len(zip_bomb) < 1 * MB
    counted = count_decompressed(monkeypatch)

    message = refusal(zip_bomb, max_bytes=10 * MB, max_file_bytes=20 * MB)

    assert message.startswith("study.zip:IM1.dcm: the DICOM sent together passes 10 MB, the most one upload")
    assert counted[0] <= 10 * MB + 64 * 1024


def test_zip_bomb_with_lying_declared_sizes_is_refused(zip_bomb, monkeypatch):
    # Both headers claim 100 bytes unpacked (the zip64 extra field too): refused, never trusted.
    archive = zipfile.ZipFile(BytesIO(zip_bomb))
    info = archive.infolist()[0]
    assert info.file_size == 200 * MB
    lying = zip_bomb.replace(struct.pack("<Q", 200 * MB), struct.pack("<Q", 100))
    lying = lying.replace(struct.pack("<I", 200 * MB), struct.pack("<I", 100))
    assert zipfile.ZipFile(BytesIO(lying)).infolist()[0].file_size == 100
    counted = count_decompressed(monkeypatch)

    message = refusal(lying, max_bytes=10 * MB, max_file_bytes=20 * MB)

    assert "study.zip" in message
    assert counted[0] <= 10 * MB + 64 * 1024


@pytest.mark.parametrize(
    "data",
    [b"", b"not a zip at all", b"PK\x03\x04" + bytes(100), make_zip([("IM1.dcm", b"x" * 5000)])[:-30]],
    ids=["empty", "text", "header-only", "truncated"],
)
def test_corrupt_zips_are_refused(data):
    assert refusal(data).startswith("study.zip: is not a zip file or is damaged")


def test_corrupt_entry_data_is_refused():
    payload = bytes(range(256)) * 40
    data = bytearray(make_zip([("IM1.dcm", payload)]))
    middle = data.find(b"IM1.dcm") + 7 + 200  # inside the deflated stream of the local entry
    data[middle : middle + 8] = b"\xff" * 8

    assert refusal(bytes(data)).startswith("study.zip:IM1.dcm: is damaged in the zip")


def test_an_empty_zip_is_refused():
    data = make_zip([(zipfile.ZipInfo("empty/"), b""), ("DICOMDIR", b"x")])

    assert refusal(data).startswith("study.zip: holds no files")
