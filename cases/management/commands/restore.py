from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cases.services.backup import BackupError, backup_restore


class Command(BaseCommand):
    help = (
        "Restore a backup taken by `manage.py backup` into an empty database and an empty data dir "
        "(refused otherwise), then verify every file against the manifest's SHA-256, every slice "
        "against the hash recorded at upload and every count; exits non-zero on any mismatch."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--from", dest="source", required=True, type=Path, help="the backup folder")

    def handle(self, *args: Any, source: Path, **options: Any) -> None:
        try:
            report = backup_restore(folder=source)
        except BackupError as error:
            raise CommandError(str(error)) from error
        for problem in report.problems:
            self.stderr.write(f"mismatch: {problem}")
        for note in report.notes:
            self.stdout.write(note)
        self.stdout.write(report.summary("Restored from"))
        if not report.ok:
            raise CommandError(f"The restore does not match its backup: {len(report.problems)} mismatch(es).")
