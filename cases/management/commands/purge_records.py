from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import ProtectedError

from cases.services import (
    RetentionError,
    patient_purge,
    patient_purge_plan,
    patients_to_purge,
)


class Command(BaseCommand):
    help = (
        "Remove patients' whole records (scans, slices, predictions, reviews and their files) under a "
        "retention policy, one transaction per patient, each leaving a `purge` entry in the audit "
        "trail. Without --confirm, only shows what would be removed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--patient",
            type=int,
            action="append",
            default=[],
            metavar="ID",
            help="a patient's id; repeat for several",
        )
        parser.add_argument(
            "--before",
            metavar="YYYY-MM-DD",
            help="every patient whose newest scan was taken before this day (without scans: registered)",
        )
        parser.add_argument("--confirm", action="store_true", help="delete; without it, a dry run")

    def handle(
        self, *args: Any, patient: list[int], before: str | None, confirm: bool, **options: Any
    ) -> None:
        if not patient and before is None:
            raise CommandError(
                "Say whose records to purge: --patient ID (repeatable) or --before YYYY-MM-DD."
            )
        try:
            ids = patients_to_purge(patient_ids=patient, before=_day(before))
        except RetentionError as exc:
            raise CommandError(str(exc)) from None
        if not ids:
            self.stdout.write("No patient matches; nothing to purge.")
            return
        if not confirm:
            self._dry_run(ids)
            return
        for done, patient_id in enumerate(ids):
            try:
                summary = patient_purge(patient_id=patient_id)
            except ProtectedError as exc:
                raise CommandError(
                    f"Patient {patient_id} was not purged (nothing of theirs was deleted): a row outside "
                    f"the clinical record still refers to it ({exc.args[0]}). {done} patient(s) before "
                    "it were purged."
                ) from None
            self.stdout.write(f"Purged patient {patient_id}: {summary.describe()}")
        self.stdout.write(self.style.SUCCESS(f"Purged {len(ids)} patient(s); see the audit trail."))

    def _dry_run(self, ids: list[int]) -> None:
        for patient_id in ids:
            summary = patient_purge_plan(patient_id=patient_id)
            self.stdout.write(f"Would purge patient {patient_id}: {summary.describe()}")
        self.stdout.write(
            f"Dry run: nothing was deleted. Run again with --confirm to purge {len(ids)} patient(s)."
        )


def _day(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--before must be a date as YYYY-MM-DD, got {text!r}.") from None
