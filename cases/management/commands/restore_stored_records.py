from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from cases.services.stored_records import stored_records_restore


class Command(BaseCommand):
    help = (
        "Once after upgrading: store slices uploaded before the metadata-free copies as such copies "
        "(the old hash kept as source_sha256) and remove server paths from stored failure reasons. "
        "A dry run unless --apply."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--apply", action="store_true", help="make the changes (default: report only)")

    def handle(self, *args: Any, apply: bool, **options: Any) -> None:
        report = stored_records_restore(apply=apply)
        for problem in report.problems:
            self.stdout.write(problem)
        verb = "" if apply else "would be "
        self.stdout.write(
            f"{report.copied} slice(s) {verb}stored again as clean copies; "
            f"{report.reasons_cleaned} failure reason(s) {verb}cleaned of server paths."
        )
        if not apply and (report.copied or report.reasons_cleaned):
            self.stdout.write("Nothing was changed; run again with --apply.")
