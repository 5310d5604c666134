"""python manage.py evaluate_model --data DIR [--weights DIR] [--split all|train|val|test] [--json]"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from inference.preprocessing import CLASS_NAMES, ImageDecodeError


class Command(BaseCommand):
    help = (
        "Evaluate weights on a labelled folder (manifest.csv, or subfolders normal/benign/malignant): "
        "accuracy, balanced accuracy, per-class precision/recall/F1, ROC AUC, confusion matrix."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--data", required=True, type=Path)
        parser.add_argument(
            "--weights",
            type=Path,
            default=None,
            help="model directory (default: settings.INFERENCE_WEIGHTS_DIR)",
        )
        parser.add_argument(
            "--split",
            choices=("all", "train", "val", "test"),
            default="all",
            help="all images (default), or one block of the patient-disjoint split the card describes",
        )
        parser.add_argument("--limit", type=int, default=None, help="at most N images per class")
        parser.add_argument("--json", action="store_true", help="print the metrics as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        import numpy as np

        from inference.predictor import get_predictor
        from inference.preprocessing import gray_to_input
        from inference.training import (
            SPLITS,
            classification_metrics,
            limit_records,
            load_images,
            patient_block_split,
            read_manifest,
            unique_records,
        )

        data_dir: Path = options["data"]
        if not data_dir.is_dir():
            raise CommandError(f"--data {data_dir} is not a folder")
        weights_dir = options["weights"] or settings.INFERENCE_WEIGHTS_DIR
        try:
            predictor = get_predictor(weights_dir)
            records = limit_records(unique_records(read_manifest(data_dir)), options["limit"])
            gray = load_images(
                data_dir,
                records,
                cache_dir=Path(settings.DATA_DIR) / "cache",
                size=predictor.image_size,
                echo=self.stderr.write,
            )
        except (FileNotFoundError, ValueError, ImageDecodeError) as exc:
            raise CommandError(str(exc)) from exc
        labels = np.array([CLASS_NAMES.index(r.label) for r in records])
        selected = np.ones(len(records), dtype=bool)
        if options["split"] != "all" and "cross_validation" in predictor.card:
            raise CommandError(
                "this model was selected by cross-validation and trained on all development data: it has "
                "no held-out block; its card's figures are out-of-fold (see build_ensemble)"
            )
        if options["split"] != "all":
            fractions = tuple(
                predictor.card.get("split", {}).get("fractions", {}).get(s, f)
                for s, f in zip(SPLITS, (0.7, 0.15, 0.15), strict=True)
            )
            assignment, _ = patient_block_split(records, gray, fractions=fractions)
            selected = assignment == SPLITS.index(options["split"])

        probabilities = []
        indices = np.flatnonzero(selected)
        for start in range(0, len(indices), 64):
            chunk = indices[start : start + 64]
            probabilities.append(predictor.predict(gray_to_input(gray[chunk])))
        probs = np.concatenate(probabilities) if probabilities else np.zeros((0, len(CLASS_NAMES)))
        metrics = classification_metrics(labels[selected], probs)
        metrics["model"] = predictor.name
        metrics["weights_sha256"] = predictor.sha256
        metrics["data"] = str(data_dir)
        metrics["split"] = options["split"]

        if options["json"]:
            self.stdout.write(json.dumps(metrics, indent=2))
            return
        self._print(metrics, predictor.card, data_dir, options["split"])

    def _print(self, m: dict[str, Any], card: dict[str, Any], data_dir: Path, split: str) -> None:
        w = self.stdout.write
        w(f"model {m['model']} (sha256 {m['weights_sha256'][:12]}…) on {data_dir} [{split}], {m['n']} images")
        trained_on = card.get("dataset", {}).get("path")
        if split in ("all", "train") and trained_on and Path(trained_on).resolve() == data_dir.resolve():
            w(
                self.style.WARNING(
                    "note: these images include the ones the model was trained on; "
                    "use --split test for the held-out block"
                )
            )
        w(f"accuracy           {_f(m['accuracy'])}")
        w(f"balanced accuracy  {_f(m['balanced_accuracy'])}")
        w(f"macro ROC AUC      {_f(m['roc_auc_ovr_macro'])}")
        w("")
        w(f"{'class':<10} {'precision':>9} {'recall':>7} {'F1':>6} {'AUC':>6} {'n':>5}")
        for name in CLASS_NAMES:
            pc = m["per_class"][name]
            w(
                f"{name:<10} {_f(pc['precision']):>9} {_f(pc['recall']):>7} {_f(pc['f1']):>6} "
                f"{_f(pc['roc_auc']):>6} {pc['support']:>5}"
            )
        w("")
        w("confusion matrix (rows true, columns predicted):")
        w(" " * 11 + " ".join(f"{n:>9}" for n in CLASS_NAMES))
        for name, row in zip(CLASS_NAMES, m["confusion_matrix"], strict=True):
            w(f"{name:<10} " + " ".join(f"{v:>9}" for v in row))


def _f(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}"
