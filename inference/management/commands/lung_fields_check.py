"""python manage.py lung_fields_check --data ../shared/datasets/iqothnccd [--sheet PNG] [--outlines PNG]"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = (
        "Segment the lung fields of every distinct slice of the dataset (at the shipped model's input "
        "size) and count the masks that look wrong: empty, touching the border, an implausible area, "
        "one-sided. Writes contact sheets: --sheet with the slices (keep it out of the repository), "
        "--outlines with the masks alone."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--data", required=True, type=Path, help="the dataset folder (manifest.csv)")
        parser.add_argument("--size", type=int, default=None, help="input size (default: the card's)")
        parser.add_argument("--limit", type=int, default=None, help="at most this many slices, spread evenly")
        parser.add_argument("--sheet", type=Path, default=Path("var/lung_fields/sheet.png"))
        parser.add_argument("--outlines", type=Path, default=None)
        parser.add_argument(
            "--write-card",
            action="store_true",
            help="store the counts in the model card, the outlines sheet beside it",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from django.conf import settings

        from inference.artifacts import read_card
        from inference.lung_fields import AREA_RANGE
        from inference.training.card_update import card_update
        from inference.training.lung_check import OUTLINES_PLOT, check_dataset

        data: Path = options["data"]
        if not data.is_dir():
            raise CommandError(f"{data} is not a folder")
        weights = Path(settings.INFERENCE_WEIGHTS_DIR)
        size = options["size"] or int(read_card(weights).get("image_size") or 384)
        outlines = options["outlines"]
        if options["write_card"]:
            if options["limit"] or options["size"]:
                raise CommandError("--write-card takes the whole dataset at the card's size")
            outlines = weights / OUTLINES_PLOT
        result = check_dataset(
            data,
            size=size,
            limit=options["limit"],
            sheet=options["sheet"],
            outlines=outlines,
            echo=lambda line: self.stderr.write(line),
        )
        summary = {"size": size, **result.summary()}
        self.stdout.write(json.dumps(summary, indent=2))
        if options["write_card"]:
            command = "python manage.py lung_fields_check --data ../shared/datasets/iqothnccd --write-card"
            entry = {**summary, "area_range": list(AREA_RANGE), "outlines": OUTLINES_PLOT, "command": command}
            card_update(weights, {"lung_fields": entry})
