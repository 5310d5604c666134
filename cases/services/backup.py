"""Backups and restores of a whole portal: the database by its own tool, the private files one by
one, and a manifest that a restore verifies everything against.

A backup folder holds `manifest.json`, the database (`database.pgdump`, pg_dump's custom format
taken in an exported snapshot; or `database.sqlite3`, SQLite's online backup) and the files of
MEDIA_ROOT under `media/` and of the C-STORE inbox under `dicom-inbox/`. The counts, migrations
and file references in the manifest are read from the very snapshot that was dumped, so they match
the database exactly however busy the portal is. The database goes first and the files after:
a file written meanwhile is copied without a row naming it (harmless); a file deleted meanwhile
(a retention purge) would be missing, and the backup says so.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from django.apps import apps
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations.loader import MigrationLoader
from django.utils import timezone

from audit import trail

from ..models import Slice, SliceResult
from .storage import slice_intact

MANIFEST = "manifest.json"
FORMAT = 1
DATABASE_FILES = {"postgresql": "database.pgdump", "sqlite": "database.sqlite3"}
MEDIA = "media"
INBOX = "dicom-inbox"
COPY_ATTEMPTS = 5  # a file still changing after this many copies fails the backup
CHUNK = 1024 * 1024
# libpq reads these from the environment: nothing secret goes on a command line.
PG_OPTION_VARIABLES = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
}


class BackupError(Exception):
    """The backup or restore cannot be done as asked; nothing was written (or nothing more)."""


@dataclass(frozen=True)
class Snapshot:
    """What the dumped database holds: rows per model, applied migrations, the files it names."""

    counts: dict[str, int]
    migrations: dict[str, list[str]]
    slice_files: list[tuple[str, str]]  # (media name, SHA-256 recorded at upload)
    other_files: list[str]  # thumbnails and heatmaps: named by a row, no hash recorded


@dataclass
class Report:
    """What a backup or restore did, and every problem found (none: it is good)."""

    folder: Path
    files: int = 0
    bytes: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self, verb: str) -> str:
        rows = sum(self.counts.values())
        state = "verified" if self.ok else f"{len(self.problems)} problem(s)"
        return f"{verb} {self.folder}: {rows} rows, {self.files} files ({self.bytes} bytes); {state}."


# --- taking a backup ---------------------------------------------------------------------------


def backup_create(*, folder: Path, alias: str = "default") -> Report:
    """Copy the database and the private files into `folder` (new or empty) with a manifest, and
    record the backup in the audit trail. Problems found (a referenced file missing, a slice whose
    file no longer matches its hash) are in the report and the manifest; the copy is still made."""
    folder = Path(folder).resolve()
    connection = connections[alias]
    engine = _engine(connection)
    _refuse_inside(folder, _file_roots())
    _private_folder(folder)
    started = timezone.now()
    database = folder / DATABASE_FILES[engine]
    snapshot, tool = (_pg_dump if engine == "postgresql" else _sqlite_backup)(connection, database)
    files, problems = _files_copy(folder)
    problems += _references_check(snapshot, files)
    report = Report(
        folder=folder,
        files=len(files),
        bytes=sum(entry["size"] for entry in files.values()),
        counts=snapshot.counts,
        problems=problems,
    )
    manifest = {
        "format": FORMAT,
        "portal": _portal_version(),
        "started_at": started.isoformat(),
        "finished_at": timezone.now().isoformat(),
        "database": {"engine": engine, "file": database.name, "tool": tool, **_hashed(database)},
        "migrations": snapshot.migrations,
        "counts": snapshot.counts,
        "files": files,
        "problems": problems,
    }
    with _private_writer(folder / MANIFEST) as handle:
        handle.write(json.dumps(manifest, indent=1, sort_keys=True).encode())
    return _recorded(report, trail.Action.CREATE, "backup", "Backup to")


def _engine(connection: BaseDatabaseWrapper) -> str:
    if connection.vendor not in DATABASE_FILES:
        raise BackupError(f"Backups support PostgreSQL and SQLite, not {connection.vendor}.")
    return connection.vendor


def _file_roots() -> dict[str, Path]:
    return {MEDIA: Path(settings.MEDIA_ROOT).resolve(), INBOX: Path(settings.DICOM_INBOX_DIR).resolve()}


def _refuse_inside(folder: Path, roots: Mapping[str, Path]) -> None:
    for root in roots.values():
        if folder == root or root in folder.parents:
            raise BackupError(f"{folder} is inside {root}, which is being backed up: choose another folder.")


def _private_folder(folder: Path) -> None:
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise BackupError(
            f"{folder} is not an empty folder: a backup is written only into a new or empty one."
        )
    _private_dirs(folder)
    folder.chmod(0o700)


@contextmanager
def _private_writer(path: Path) -> Iterator[IO[bytes]]:
    """A new file only its owner can read (0600 from the start), flushed to disk when closed."""
    _private_dirs(path.parent)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def _private_dirs(path: Path) -> None:
    """Create `path` and any missing parents 0700 (`mkdir(parents=True)` gives parents the umask's)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)


def _hashed(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return {"sha256": digest.hexdigest(), "size": path.stat().st_size}


# The database -----------------------------------------------------------------------------------


def _sqlite_backup(connection: BaseDatabaseWrapper, target: Path) -> tuple[Snapshot, str]:
    """SQLite's online backup API: a consistent copy while the portal writes (one step, under a
    read lock); the snapshot is then read from the copy itself."""
    name = str(connection.settings_dict["NAME"])
    if not name or name == ":memory:" or name.startswith("file::memory:") or not Path(name).exists():
        raise BackupError(f"There is no SQLite database file to back up at {name!r}.")
    with _private_writer(target):
        pass  # created 0600 before SQLite writes to it
    with closing(sqlite3.connect(name)) as source, closing(sqlite3.connect(target)) as copy_:
        source.backup(copy_)
    with closing(sqlite3.connect(target)) as copy_:
        tables = {row[0] for row in copy_.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        snapshot = _snapshot(copy_.cursor(), tables)
    return snapshot, f"sqlite3 online backup (SQLite {sqlite3.sqlite_version})"


def _pg_dump(connection: BaseDatabaseWrapper, target: Path) -> tuple[Snapshot, str]:
    """pg_dump in a snapshot exported by our own repeatable-read transaction, which then reads the
    counts and references: both see exactly the same database."""
    reader = type(connection)(copy.deepcopy(connection.settings_dict), alias=f"{connection.alias}-backup")
    try:
        with reader.cursor() as cursor:
            cursor.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cursor.execute("SELECT pg_export_snapshot()")
            snapshot_id = cursor.fetchone()[0]
            with _private_writer(target) as handle:
                _run(
                    ["pg_dump", "--format=custom", f"--snapshot={snapshot_id}", "--no-password"],
                    settings_dict=reader.settings_dict,
                    stdout=handle,
                )
            snapshot = _snapshot(cursor, set(reader.introspection.table_names(cursor)))
            cursor.execute("COMMIT")
    finally:
        reader.close()
    return snapshot, _run(["pg_dump", "--version"], settings_dict={}).strip()


def _pg_environment(settings_dict: Mapping[str, Any]) -> dict[str, str]:
    values = {
        "PGDATABASE": settings_dict.get("NAME"),
        "PGUSER": settings_dict.get("USER"),
        "PGPASSWORD": settings_dict.get("PASSWORD"),
        "PGHOST": settings_dict.get("HOST"),
        "PGPORT": settings_dict.get("PORT"),
    }
    options = settings_dict.get("OPTIONS") or {}
    values.update({variable: options.get(option) for option, variable in PG_OPTION_VARIABLES.items()})
    return {**os.environ, **{name: str(value) for name, value in values.items() if value}}


def _run(command: list[str], *, settings_dict: Mapping[str, Any], stdout: IO[bytes] | None = None) -> str:
    """Run a PostgreSQL client; its error output becomes the BackupError's message."""
    try:
        result = subprocess.run(
            command,
            env=_pg_environment(settings_dict),
            stdout=stdout if stdout is not None else subprocess.PIPE,
            stderr=subprocess.PIPE,
            check=False,
        )
    except FileNotFoundError as error:
        raise BackupError(f"{command[0]} is not installed: install PostgreSQL's client tools.") from error
    if result.returncode != 0:
        raise BackupError(f"{command[0]} failed: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout.decode() if stdout is None else ""


def _snapshot(cursor: Any, tables: set[str]) -> Snapshot:
    """Counts, migrations and file references, read through a DB-API cursor (psycopg or sqlite3)."""
    counts = {}
    for label, table in _model_tables().items():
        if table in tables:
            cursor.execute(f'SELECT COUNT(*) FROM "{table}"')
            counts[label] = int(cursor.fetchone()[0])
    migrations: dict[str, list[str]] = {}
    cursor.execute('SELECT "app", "name" FROM "django_migrations" ORDER BY "app", "name"')
    for app, name in cursor.fetchall():
        migrations.setdefault(app, []).append(name)
    slice_table, result_table = Slice._meta.db_table, SliceResult._meta.db_table
    cursor.execute(
        f'SELECT "image", "sha256", "thumbnail", "hounsfield", "hounsfield_sha256" FROM "{slice_table}"'
    )
    slice_files, other_files = [], []
    for image, sha256, thumbnail, hounsfield, hounsfield_sha256 in cursor.fetchall():
        slice_files.append((image, sha256))
        if hounsfield:
            slice_files.append((hounsfield, hounsfield_sha256))
        other_files.append(thumbnail)
    cursor.execute(f'SELECT "heatmap" FROM "{result_table}" WHERE "heatmap" <> \'\'')
    other_files += [row[0] for row in cursor.fetchall()]
    return Snapshot(counts=counts, migrations=migrations, slice_files=slice_files, other_files=other_files)


def _model_tables() -> dict[str, str]:
    """Every table the portal's models own, by "app_label.Model"."""
    return {
        model._meta.label: model._meta.db_table
        for model in apps.get_models(include_auto_created=True)
        if model._meta.managed and not model._meta.proxy
    }


# The files --------------------------------------------------------------------------------------


def _files_copy(folder: Path) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Every regular file under the file roots, copied and hashed: {"media/<name>": {sha256, size}}."""
    files: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for prefix, root in _file_roots().items():
        for path in _walk(root):
            key = f"{prefix}/{path.relative_to(root).as_posix()}"
            try:
                files[key] = _stable_copy(path, folder / key)
            except FileNotFoundError:
                continue  # removed meanwhile: a failed run's clean-up; a row naming it is reported
            except BackupError as error:
                problems.append(str(error))
    return files, problems


def _walk(root: Path) -> Iterator[Path]:
    if not root.is_dir():
        return
    for directory, folders, names in os.walk(root):
        folders.sort()
        for name in sorted(names):
            path = Path(directory) / name
            if path.is_file() and not path.is_symlink():
                yield path


def _stable_copy(source: Path, target: Path) -> dict[str, Any]:
    """Copy, hashing what was read; hash the source again afterwards: a file that changed during
    the copy is copied again."""
    for _attempt in range(COPY_ATTEMPTS):
        before = source.stat()
        target.unlink(missing_ok=True)
        with source.open("rb") as reader, _private_writer(target) as writer:
            copied = _copy_hashing(reader, writer)
        after = source.stat()
        unchanged = (before.st_size, before.st_mtime_ns) == (after.st_size, after.st_mtime_ns)
        if unchanged and _hashed(source)["sha256"] == copied["sha256"]:
            return copied
    raise BackupError(f"{source} kept changing while it was copied ({COPY_ATTEMPTS} attempts).")


def _copy_hashing(reader: IO[bytes], writer: IO[bytes]) -> dict[str, Any]:
    digest, size = hashlib.sha256(), 0
    while chunk := reader.read(CHUNK):
        digest.update(chunk)
        writer.write(chunk)
        size += len(chunk)
    return {"sha256": digest.hexdigest(), "size": size}


def _references_check(snapshot: Snapshot, files: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Files the dumped rows name that were not copied, and slices whose copy is not what was
    stored at upload: the restore would fail on them, so the backup says so now."""
    problems = []
    for name, expected in snapshot.slice_files:
        entry = files.get(f"{MEDIA}/{name}")
        if entry is None:
            problems.append(f"{MEDIA}/{name}: named by a slice but missing from media")
        elif entry["sha256"] != expected:
            problems.append(f"{MEDIA}/{name}: SHA-256 differs from the one recorded at upload")
    problems += [
        f"{MEDIA}/{name}: named by a row but missing from media"
        for name in snapshot.other_files
        if f"{MEDIA}/{name}" not in files
    ]
    return problems


def _portal_version() -> dict[str, Any]:
    """The code that took the backup: LUNGPORTAL_VERSION if set, and the git commit where known."""
    version: dict[str, Any] = {"version": os.environ.get("LUNGPORTAL_VERSION", "")}
    try:
        commit = subprocess.run(
            ["git", "-C", str(settings.BASE_DIR), "rev-parse", "HEAD"],
            capture_output=True,
            check=True,
            timeout=10,
        )
        dirty = subprocess.run(
            ["git", "-C", str(settings.BASE_DIR), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return {**version, "commit": None}
    return {**version, "commit": commit.stdout.decode().strip(), "modified": bool(dirty.stdout.strip())}


# --- restoring ---------------------------------------------------------------------------------


def backup_restore(*, folder: Path, alias: str = "default") -> Report:
    """Restore a backup into an empty database and empty file roots, then verify it: every file
    against the manifest's SHA-256, every slice against the hashes recorded at upload, every count
    against the manifest. The outcome is recorded in the restored audit trail."""
    folder = Path(folder).resolve()
    manifest = _manifest_read(folder)
    connection = connections[alias]
    engine = _engine(connection)
    if manifest["database"]["engine"] != engine:
        raise BackupError(
            f"This backup holds a {manifest['database']['engine']} database; the portal is configured "
            f"for {engine}: restore it into a portal with the same database engine."
        )
    roots = _file_roots()
    _refuse_nonempty(connection, roots)
    database = folder / manifest["database"]["file"]
    if not database.is_file() or _hashed(database) != _expected(manifest["database"]):
        raise BackupError(
            f"{database} is missing or does not match the manifest's SHA-256: nothing restored."
        )
    connections.close_all()
    (_pg_restore if engine == "postgresql" else _sqlite_restore)(connection, database)
    report = Report(folder=folder)
    _files_restore(folder, manifest["files"], roots, report)
    _counts_verify(manifest["counts"], report)  # before the checks below add audit entries
    _migrations_verify(connection, manifest["migrations"], report)
    _slices_verify(report)
    _named_files_verify(report)
    if manifest.get("problems"):
        report.notes.append(f"The backup recorded {len(manifest['problems'])} problem(s) when it was taken.")
    return _recorded(report, trail.Action.INTEGRITY, "restore", "Restored from")


def _manifest_read(folder: Path) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError as error:
        raise BackupError(f"{folder} holds no {MANIFEST}: it is not a complete backup.") from error
    except json.JSONDecodeError as error:
        raise BackupError(f"{folder / MANIFEST} is not valid JSON: {error}") from error
    if manifest.get("format") != FORMAT:
        raise BackupError(
            f"{folder / MANIFEST} has format {manifest.get('format')!r}; this portal reads {FORMAT}."
        )
    return manifest


def _expected(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {"sha256": entry["sha256"], "size": entry["size"]}


def _refuse_nonempty(connection: BaseDatabaseWrapper, roots: Mapping[str, Path]) -> None:
    """A restore never overwrites: the database must have no tables and the file roots no files."""
    if _database_tables(connection):
        raise BackupError(
            f"The database {connection.settings_dict['NAME']} is not empty: restore only into an empty "
            "database (PostgreSQL: createdb a new one; SQLite: a data dir without db.sqlite3)."
        )
    for root in roots.values():
        if next(_walk(root), None) is not None:
            raise BackupError(f"{root} is not empty: restore only into an empty data dir and media folder.")


def _database_tables(connection: BaseDatabaseWrapper) -> list[str]:
    if connection.vendor == "sqlite":
        name = Path(str(connection.settings_dict["NAME"]))
        if not name.exists() or name.stat().st_size == 0:
            return []
    with connection.cursor() as cursor:
        return list(connection.introspection.table_names(cursor))


def _sqlite_restore(connection: BaseDatabaseWrapper, database: Path) -> None:
    target = Path(str(connection.settings_dict["NAME"]))
    _private_dirs(target.parent)
    target.touch(mode=0o600, exist_ok=True)
    target.chmod(0o600)
    with closing(sqlite3.connect(database)) as source, closing(sqlite3.connect(target)) as copy_:
        source.backup(copy_)


def _pg_restore(connection: BaseDatabaseWrapper, database: Path) -> None:
    # One transaction: a restore that fails part-way leaves the database empty, not half-filled.
    # Objects belong to the restoring role, which need not be the one that took the backup.
    _run(
        [
            "pg_restore",
            "--exit-on-error",
            "--single-transaction",
            "--no-owner",
            "--no-privileges",
            "--no-password",
        ]
        + ["--dbname", str(connection.settings_dict["NAME"]), str(database)],
        settings_dict=connection.settings_dict,
    )


def _files_restore(
    folder: Path, files: Mapping[str, Mapping[str, Any]], roots: Mapping[str, Path], report: Report
) -> None:
    for key, entry in sorted(files.items()):
        target = _target(key, roots)
        source = folder / key
        if not source.is_file():
            report.problems.append(f"{key}: listed in the manifest but missing from the backup")
            continue
        with source.open("rb") as reader, _private_writer(target) as writer:
            shutil.copyfileobj(reader, writer, CHUNK)
        found = _hashed(target)  # read back from where the portal will read it
        report.files += 1
        report.bytes += found["size"]
        if found != _expected(entry):
            report.problems.append(f"{key}: SHA-256 {found['sha256'][:12]}… differs from the manifest's")


def _target(key: str, roots: Mapping[str, Path]) -> Path:
    """Where a manifest entry goes; a name that would leave its root is refused."""
    path = PurePosixPath(key)
    if path.is_absolute() or ".." in path.parts or len(path.parts) < 2 or path.parts[0] not in roots:
        raise BackupError(f"The manifest names {key!r}, which is outside the portal's folders.")
    return roots[path.parts[0]].joinpath(*path.parts[1:])


def _counts_verify(expected: Mapping[str, int], report: Report) -> None:
    for label, count in sorted(expected.items()):
        model = _model(label)
        if model is None:
            report.problems.append(f"{label}: in the backup, unknown to this portal's code")
            continue
        found = model._base_manager.count()
        report.counts[label] = found
        if found != count:
            report.problems.append(f"{label}: {found} rows restored, {count} in the manifest")


def _model(label: str) -> Any:
    try:
        return apps.get_model(label)
    except LookupError:
        return None


def _migrations_verify(
    connection: BaseDatabaseWrapper, recorded: Mapping[str, list[str]], report: Report
) -> None:
    loader = MigrationLoader(connection, ignore_no_migrations=True)
    applied = {(app, name) for app, names in recorded.items() for name in names}
    if applied != set(loader.applied_migrations):
        report.problems.append("the restored django_migrations table differs from the manifest's")
    unknown = sorted(f"{app}.{name}" for app, name in applied - set(loader.graph.nodes))
    if unknown:
        report.problems.append(
            f"migrations applied in the backup but unknown to this code: {', '.join(unknown)}"
        )
    pending = set(loader.graph.nodes) - applied
    if pending:
        report.notes.append(f"{len(pending)} migrations of this code are not applied: run manage.py migrate.")


def _slices_verify(report: Report) -> None:
    """Every slice's file (and Hounsfield file) against the hash recorded at upload; a mismatch is
    recorded in the audit trail by `slice_intact`."""
    for item in Slice.objects.select_related("scan").order_by("pk").iterator(chunk_size=500):
        checks: list[tuple[str, str]] = [(item.image.name, item.sha256)]
        if item.hounsfield:
            checks.append((item.hounsfield.name, item.hounsfield_sha256))
        for name, expected in checks:
            content = _read(name)
            if content is None:
                report.problems.append(f"{MEDIA}/{name}: slice {item.pk}'s file is missing")
            elif not slice_intact(item, content, use="restored intact", expected=expected):
                report.problems.append(
                    f"{MEDIA}/{name}: slice {item.pk}'s file differs from its upload SHA-256"
                )


def _named_files_verify(report: Report) -> None:
    """Thumbnails and heatmaps carry no hash of their own: each one a row names must exist."""
    names = set(Slice.objects.values_list("thumbnail", flat=True))
    names.update(SliceResult.objects.exclude(heatmap="").values_list("heatmap", flat=True))
    report.problems += [
        f"{MEDIA}/{name}: named by a row but missing"
        for name in sorted(names)
        if not default_storage.exists(name)
    ]


def _read(name: str) -> bytes | None:
    try:
        with default_storage.open(name, "rb") as handle:
            content: bytes = handle.read()
            return content
    except FileNotFoundError:
        return None


def _recorded(report: Report, action: str, object_type: str, summary: str) -> Report:
    """The report, once its audit entry is written (failed when anything did not match)."""
    trail.record(
        action,
        object_type=object_type,
        outcome=trail.Outcome.OK if report.ok else trail.Outcome.FAILED,
        detail=report.summary(summary),
    )
    return report
