"""python manage.py build_ensemble CV_DIR --data ../shared/datasets/iqothnccd --out DIR"""

from __future__ import annotations

import shlex
import tempfile
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = (
        "Turn a cross-validation run (cv_result.npz + weights.npz, from `python -m "
        "inference.training.device_cv` on the GPU or the CPU) into a model directory: the fold models "
        "as an ensemble, calibrated on their out-of-fold predictions, with the study rule, the "
        "not-assessable limits, card.json, MODEL_CARD.md and plots."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("cv_dir", type=Path, metavar="CV_DIR")
        parser.add_argument("--data", required=True, type=Path, help="the dataset folder the run used")
        parser.add_argument("--out", required=True, type=Path, help="model directory to write (new or empty)")
        parser.add_argument("--name", required=True, help="model version name, e.g. ensemble-bn-gap-384-v1")
        parser.add_argument("--note", action="append", default=[], help="a note for the card (repeatable)")
        parser.add_argument(
            "--members",
            nargs="+",
            type=Path,
            default=None,
            metavar="KERAS",
            help="the fold models, already converted, in fold order (default: convert the run's weights)",
        )
        parser.add_argument(
            "--compare",
            action="append",
            default=[],
            type=Path,
            metavar="CV_DIR",
            help="another run on the same folds, scored the same way in the card's table (repeatable)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from inference.training.cv import RESULT_FILE, convert_to_keras
        from inference.training.ensemble import build_ensemble

        cv_dir, out = options["cv_dir"], options["out"]
        for run in [cv_dir, *options["compare"]]:
            if not (run / RESULT_FILE).is_file():
                raise CommandError(f"no {RESULT_FILE} in {run}")
        if out.exists() and any(out.iterdir()):
            raise CommandError(f"{out} is not empty; write to a new folder and move it into place")
        words = ["build_ensemble", str(cv_dir), "--data", str(options["data"]), "--out", str(out)]
        for other in options["compare"]:
            words += ["--compare", str(other)]
        command = "python manage.py " + shlex.join([*words, "--name", options["name"]])
        if options["note"]:
            command += " --note ...  # the notes are in the card"
        if options["members"]:
            _check_members(cv_dir, options["members"])
        with tempfile.TemporaryDirectory() as scratch:
            members = options["members"] or convert_to_keras(cv_dir, Path(scratch), echo=self.stdout.write)
            card = build_ensemble(
                cv_dir=cv_dir,
                data_dir=options["data"],
                out_dir=out,
                name=options["name"],
                members=members,
                command=command,
                notes=options["note"],
                compare=options["compare"],
                echo=self.stdout.write,
            )
        metrics = card["metrics"]
        self.stdout.write(
            self.style.SUCCESS(
                f"{out}: {len(members)} members; balanced accuracy {metrics['balanced_accuracy']:.3f}, "
                f"malignant sensitivity {metrics['malignant_sensitivity']:.3f}, "
                f"specificity {metrics['specificity']:.3f} (cross-validated)"
            )
        )


def _check_members(cv_dir: Path, members: list[Path]) -> None:
    """Given fold models must hold exactly the run's fold weights, in fold order."""
    import keras
    import numpy as np

    from inference.training.cv import load_fold_weights

    _, weights = load_fold_weights(cv_dir)
    if len(members) != len(weights):
        raise CommandError(f"{len(members)} members given; the run has {len(weights)} folds")
    for path, (fold, expected) in zip(members, sorted(weights.items()), strict=True):
        actual = keras.models.load_model(path, compile=False).get_weights()
        if len(actual) != len(expected) or not all(
            np.array_equal(a, e) for a, e in zip(actual, expected, strict=True)
        ):
            raise CommandError(f"{path} does not hold fold {fold}'s weights of {cv_dir}")
