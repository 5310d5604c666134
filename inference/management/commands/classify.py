"""python manage.py classify FILE [FILE ...] [--json]"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from inference.preprocessing import (
    ACCEPTED_FORMATS_TEXT,
    CLASS_NAMES,
    ImageDecodeError,
    Inspection,
    inspect,
    most_probable,
    named_probabilities,
    preprocess,
)

if TYPE_CHECKING:
    from inference.models import ModelVersion


class Command(BaseCommand):
    help = (
        f"Classify CT slices ({ACCEPTED_FORMATS_TEXT}) with the active model version. --json prints one JSON "
        "object per file and line; a file that cannot be read gets an error line, and the command "
        "exits non-zero after classifying the others."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
        parser.add_argument("--json", action="store_true", help="one JSON object per line")

    def handle(self, *args: Any, **options: Any) -> None:
        version = _active_version()
        # Decode everything first so that all readable slices go through the network in batches.
        results: list[dict[str, Any]] = []
        readable: list[tuple[int, Inspection]] = []
        for index, path in enumerate(options["files"]):
            results.append({"file": str(path)})
            found, error = _read_slice(path)
            if found is None:
                results[index]["error"] = error
            else:
                readable.append((index, found))
        if readable:
            _classify(readable, results, version)

        failures = [r for r in results if "error" in r]
        if options["json"]:
            self._json_lines(results, version.name)
        else:
            self._table(results, version.name)
        if failures:
            raise CommandError(f"{len(failures)} of {len(results)} files could not be classified")

    def _json_lines(self, results: list[dict[str, Any]], version: str) -> None:
        for result in results:
            if "error" in result:
                result["model_version"] = version
            self.stdout.write(json.dumps(result))

    def _table(self, results: list[dict[str, Any]], version: str) -> None:
        width = max(len("file"), *(len(r["file"]) for r in results))
        header = f"{'file':<{width}}  {'label':<9}  " + "  ".join(f"{n:>9}" for n in CLASS_NAMES)
        self.stdout.write(f"model version: {version}")
        self.stdout.write(header)
        self.stdout.write("-" * len(header))
        for r in results:
            if "error" in r:
                self.stdout.write(f"{r['file']:<{width}}  error: {r['error']}")
            elif not r["assessable"]:
                self.stdout.write(f"{r['file']:<{width}}  not assessable: {r['reason']}")
            else:
                probs = "  ".join(f"{r['probabilities'][n]:>9.3f}" for n in CLASS_NAMES)
                self.stdout.write(f"{r['file']:<{width}}  {r['label']:<9}  {probs}")


def _active_version() -> ModelVersion:
    from inference.services import model_version_active

    try:
        return model_version_active()
    except DatabaseError as exc:
        raise CommandError(
            f"cannot read the model versions ({exc}); run `python manage.py migrate` first"
        ) from exc
    except Exception as exc:
        raise CommandError(f"no usable model version: {exc}") from exc


def _read_slice(path: Path) -> tuple[Inspection | None, str | None]:
    """The decoded slice in `path`, or None and why it cannot be read."""
    try:
        data = path.read_bytes()
        found = inspect(data, max_pixels=settings.UPLOAD_MAX_PIXELS)
    except ImageDecodeError as exc:
        return None, str(exc)
    except IsADirectoryError:
        return None, "is a folder, not a file"
    except FileNotFoundError:
        return None, "no such file"
    except OSError as exc:
        return None, f"cannot read the file ({exc.strerror or exc})"
    return found, None


def _classify(
    readable: list[tuple[int, Inspection]], results: list[dict[str, Any]], version: ModelVersion
) -> None:
    """Run the assessable slices through the version's model in batches; add each one's label and
    calibrated probabilities to its result, or why it is not assessable."""
    from inference.services import model_version_predictor

    try:
        predictor = model_version_predictor(version)
    except (OSError, ValueError) as exc:
        raise CommandError(f"model version {version.name} cannot be used: {exc}") from exc
    assessable: list[tuple[int, np.ndarray]] = []
    for index, found in readable:
        reason = predictor.not_assessable_reason(found)
        results[index].update({"assessable": reason is None, "model_version": version.name})
        if reason is None:
            assessable.append((index, preprocess(found.image, size=predictor.image_size)))
        else:
            results[index]["reason"] = reason
    probabilities = predictor.predict([array for _, array in assessable])
    for (index, _), row in zip(assessable, probabilities, strict=True):
        named = named_probabilities(row)
        results[index].update({"label": most_probable(named), "probabilities": named})
