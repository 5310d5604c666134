from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cases.services.backup import BackupError, backup_create


class Command(BaseCommand):
    help = (
        "Take a consistent backup into a new or empty folder: the database (pg_dump --format=custom, "
        "or SQLite's online backup), every file of the private media and the DICOM inbox, and a "
        "manifest.json with counts, migrations and each file's SHA-256. Safe while the portal runs. "
        "Recorded in the audit trail."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--to", required=True, type=Path, help="the backup folder (created 0700; must be empty)"
        )

    def handle(self, *args: Any, to: Path, **options: Any) -> None:
        try:
            report = backup_create(folder=to)
        except BackupError as error:
            raise CommandError(str(error)) from error
        for problem in report.problems:
            self.stderr.write(f"problem: {problem}")
        self.stdout.write(report.summary("Backup to"))
        if not report.ok:
            raise CommandError(f"The backup was written, but {len(report.problems)} problem(s) were found.")
