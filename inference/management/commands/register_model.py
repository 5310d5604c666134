"""python manage.py register_model DIR [--activate] [--name NAME]"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from inference.services import ModelVersionError, model_version_register


class Command(BaseCommand):
    help = "Register a model directory (model.keras + card.json) as a model version."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("weights_dir", type=Path, metavar="DIR")
        parser.add_argument("--name", default=None, help="version name (default: the card's name)")
        parser.add_argument("--activate", action="store_true", help="make it the active version")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            version = model_version_register(
                weights_dir=options["weights_dir"], name=options["name"], activate=options["activate"]
            )
        except ModelVersionError as exc:
            raise CommandError(str(exc)) from exc
        state = "active" if version.is_active else "inactive"
        ba = version.balanced_accuracy
        self.stdout.write(
            f"{version.name} ({state}) sha256 {version.sha256} — test balanced accuracy "
            f"{'n/a' if ba is None else f'{ba:.3f}'}"
        )
