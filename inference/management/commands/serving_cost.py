"""python manage.py serving_cost --data ../shared/datasets/iqothnccd [--slices 200]"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = (
        "Time what a worker does for one study of N real slices with the active model version: load "
        "the weights (once per worker), decode and check every slice, classify them with every member, "
        "and draw the heatmaps of the most suspicious (settings.INFERENCE_HEATMAP_SLICES)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--data", required=True, type=Path, help="a folder of slices (searched recursively)"
        )
        parser.add_argument("--slices", type=int, default=200)

    def handle(self, *args: Any, **options: Any) -> None:
        from inference.preprocessing import inspect, named_probabilities, preprocess
        from inference.services import model_version_active, model_version_predictor
        from inference.study import study_result

        files = sorted(p for p in options["data"].rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
        files = files[: options["slices"]]
        if not files:
            raise CommandError(f"no JPEG or PNG slices under {options['data']}")
        version = model_version_active()
        started = time.perf_counter()
        predictor = model_version_predictor(version)
        load = time.perf_counter() - started

        started = time.perf_counter()
        found = [inspect(path.read_bytes()) for path in files]
        inputs = [
            preprocess(f.image, size=predictor.image_size)
            for f in found
            if predictor.not_assessable_reason(f) is None
        ]
        decode = time.perf_counter() - started
        predictor.predict(inputs[:1])  # the first call builds the graph: not part of a study's cost
        started = time.perf_counter()
        probabilities = predictor.predict(inputs)
        classify = time.perf_counter() - started
        study = study_result([named_probabilities(row) for row in probabilities], predictor.rule)
        started = time.perf_counter()
        for index in study.ranking[: settings.INFERENCE_HEATMAP_SLICES]:
            predictor.heatmap(inputs[index])
        heatmaps = time.perf_counter() - started
        drawn = min(len(inputs), settings.INFERENCE_HEATMAP_SLICES)
        rate = len(inputs) / max(classify, 1e-9)

        self.stdout.write(
            f"{version.name} ({len(predictor.members)} members, {predictor.image_size} px), "
            f"{len(files)} slices, {len(inputs)} assessable:\n"
            f"  load once per worker  {load:6.1f} s\n"
            f"  decode and check      {decode:6.1f} s\n"
            f"  classify              {classify:6.1f} s  ({rate:.1f} slices/s)\n"
            f"  heatmaps              {heatmaps:6.1f} s  ({drawn})\n"
            f"  a study, warm worker  {decode + classify + heatmaps:6.1f} s"
        )
