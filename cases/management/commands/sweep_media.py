from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from cases.services import media_sweep
from cases.services.media_sweep import DEFAULT_GRACE


class Command(BaseCommand):
    help = (
        "Report the files in private media (slices, thumbnails, heatmaps) that no row references; "
        "with --remove, delete them. Each sweep is recorded in the audit trail."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--remove", action="store_true", help="delete the unreferenced files")
        parser.add_argument(
            "--grace-minutes",
            type=int,
            default=int(DEFAULT_GRACE.total_seconds() // 60),
            help="leave files younger than this alone: a running worker may not have committed them yet",
        )

    def handle(self, *args: Any, remove: bool, grace_minutes: int, **options: Any) -> None:
        report = media_sweep(remove=remove, older_than=timedelta(minutes=max(0, grace_minutes)))
        for name in report.orphans:
            self.stdout.write(f"{'removed' if remove else 'orphan'} {name}")
        self.stdout.write(report.summary())
        if report.orphans and not remove:
            self.stdout.write("Nothing was deleted; run again with --remove to delete these files.")
