"""python manage.py card_intervals --data ../shared/datasets/iqothnccd [--weights DIR]"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = (
        "Recompute the model card's 95% intervals (bootstrap over studies, fixed seed) from its saved "
        "out-of-fold predictions and store them in card.json and MODEL_CARD.md. build_ensemble writes "
        "them too; this refreshes a card built before them."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--data", required=True, type=Path, help="the dataset folder (manifest.csv)")
        parser.add_argument("--weights", type=Path, default=None, help="model folder (default: settings)")

    def handle(self, *args: Any, **options: Any) -> None:
        from django.conf import settings

        from inference.training.card_update import intervals_update

        if not options["data"].is_dir():
            raise CommandError(f"{options['data']} is not a folder")
        weights = Path(options["weights"] or settings.INFERENCE_WEIGHTS_DIR)
        self.stdout.write(json.dumps(intervals_update(weights, options["data"]), indent=2))
