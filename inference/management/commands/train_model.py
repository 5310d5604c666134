"""python manage.py train_model --data ../shared/datasets/iqothnccd --out DIR"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from inference.network import VARIANTS


class Command(BaseCommand):
    help = (
        "Train the CNN on a labelled folder with a patient-disjoint block split, evaluate it on the "
        "held-out test block and write model.keras, card.json, MODEL_CARD.md and plots to --out."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--data",
            required=True,
            type=Path,
            help="dataset folder (manifest.csv, or subfolders normal/benign/malignant)",
        )
        parser.add_argument("--out", required=True, type=Path, help="model directory to write")
        parser.add_argument("--variant", choices=VARIANTS, default="improved")
        parser.add_argument("--epochs", type=int, default=40, help="maximum epochs (early stopping)")
        parser.add_argument("--patience", type=int, default=8)
        parser.add_argument("--batch-size", type=int, default=32)
        parser.add_argument("--learning-rate", type=float, default=1e-3)
        parser.add_argument("--dropout", type=float, default=0.5)
        parser.add_argument("--seed", type=int, default=1234)
        parser.add_argument(
            "--limit", type=int, default=None, help="at most N images per class (tiny runs, tests)"
        )
        parser.add_argument("--no-class-weights", action="store_true")
        parser.add_argument(
            "--compare-with",
            type=Path,
            action="append",
            default=[],
            help="another model directory (same data) whose results the card shows "
            "beside this one; repeatable",
        )
        parser.add_argument(
            "--no-cache",
            action="store_true",
            help="do not cache preprocessed images under the data directory (var/)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from inference.training import TrainConfig, train

        data = options["data"]
        if not data.is_dir():
            raise CommandError(f"--data {data} is not a folder")
        if options["epochs"] < 1:
            raise CommandError("--epochs must be at least 1")
        command = self._reproducing_command(options)
        config = TrainConfig(
            data_dir=data,
            out_dir=options["out"],
            variant=options["variant"],
            epochs=options["epochs"],
            batch_size=options["batch_size"],
            learning_rate=options["learning_rate"],
            patience=options["patience"],
            dropout=options["dropout"],
            seed=options["seed"],
            limit=options["limit"],
            class_weights=not options["no_class_weights"],
            cache_dir=None if options["no_cache"] else Path(settings.DATA_DIR) / "cache",
            compare_with=options["compare_with"],
            command=command,
        )
        try:
            train(config, echo=self.stdout.write)
        except (FileNotFoundError, ValueError) as exc:
            raise CommandError(str(exc)) from exc

    @staticmethod
    def _reproducing_command(options: dict[str, Any]) -> str:
        # Thread counts change the order of floating-point sums: part of the recipe.
        parts = [
            f"TF_INTRA_OP_THREADS={settings.TF_INTRA_OP_THREADS}",
            f"TF_INTER_OP_THREADS={settings.TF_INTER_OP_THREADS}",
            "python",
            "manage.py",
            "train_model",
            "--data",
            str(options["data"]),
            "--out",
            str(options["out"]),
            "--variant",
            options["variant"],
            "--epochs",
            str(options["epochs"]),
            "--patience",
            str(options["patience"]),
            "--batch-size",
            str(options["batch_size"]),
            "--learning-rate",
            str(options["learning_rate"]),
            "--dropout",
            str(options["dropout"]),
            "--seed",
            str(options["seed"]),
        ]
        if options["limit"]:
            parts += ["--limit", str(options["limit"])]
        if options["no_class_weights"]:
            parts.append("--no-class-weights")
        for other in options["compare_with"]:
            parts += ["--compare-with", str(other)]
        return " ".join(parts[:2]) + " " + shlex.join(parts[2:])
