"""python manage.py heat_in_lungs --data ../shared/datasets/iqothnccd [--served] [--write-card]"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = (
        "Measure the share of Grad-CAM mass inside the lung fields on the dataset's malignant slices, "
        "raw (before the masking that serving applies): where the network looks. --write-card stores "
        "the figure in the model card (card.json and MODEL_CARD.md)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--data", required=True, type=Path, help="the dataset folder")
        parser.add_argument("--weights", type=Path, default=None, help="model folder (default: settings)")
        parser.add_argument("--limit", type=int, default=None, help="at most this many slices, spread evenly")
        parser.add_argument("--served", action="store_true", help="explain by the first member, as served")
        parser.add_argument("--write-card", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        from django.conf import settings

        from inference.training.card_update import card_update
        from inference.training.heat import heat_in_lungs

        weights = Path(options["weights"] or settings.INFERENCE_WEIGHTS_DIR)
        if not options["data"].is_dir():
            raise CommandError(f"{options['data']} is not a folder")
        result = heat_in_lungs(
            weights,
            options["data"],
            limit=options["limit"],
            served=options["served"],
            echo=lambda line: self.stderr.write(line),
        )
        self.stdout.write(json.dumps(result, indent=2))
        if options["write_card"]:
            if options["limit"]:
                raise CommandError("--write-card takes the whole dataset: leave out --limit")
            command = "python manage.py heat_in_lungs --data ../shared/datasets/iqothnccd --write-card"
            card_update(weights, {"heat_in_lungs": {**result, "command": command}})
