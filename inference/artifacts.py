"""What a model directory holds and how its weights are identified.

A model directory (written by `inference.training`, registered by `inference.services`, loaded by
`inference.predictor`) holds the weights (one Keras file, or several: an ensemble's members), a
JSON card describing them, the card rendered as Markdown and PNG plots. The SHA-256 of each
weights file is recorded in the card and on the model version, and checked whenever the weights
are loaded; `version_sha256` of those identifies the model version.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

WEIGHTS_FILE = "model.keras"
CARD_FILE = "card.json"
CARD_MARKDOWN_FILE = "MODEL_CARD.md"
CURVES_PLOT = "training_curves.png"
CONFUSION_PLOT = "confusion_matrix.png"


def file_sha256(path: Path | str) -> str:
    """The SHA-256 (hex) of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def card_members(card: Mapping[str, Any]) -> dict[str, str | None]:
    """The weights files a card names, with the SHA-256 it records for each (None if none): an
    ensemble's `members`, or a single model's `weights`."""
    members = card.get("members")
    if members:
        return {str(m["file"]): m.get("sha256") for m in members}
    weights = card.get("weights") or {}
    return {str(weights.get("file") or WEIGHTS_FILE): weights.get("sha256")}


def version_sha256(hashes: Mapping[str, str]) -> str:
    """One SHA-256 for a set of weights files: the file's own for a single model; for an ensemble,
    the SHA-256 of its members' "name sha256" lines, sorted."""
    if len(hashes) == 1:
        return next(iter(hashes.values()))
    lines = "".join(f"{name} {sha}\n" for name, sha in sorted(hashes.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


class WeightsIntegrityError(ValueError):
    """A weights file is not the one its card or model version recorded: never classify with it."""


def read_card(directory: Path) -> dict[str, Any]:
    """The card of a model directory ({} where there is none)."""
    path = directory / CARD_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def verified_hashes(
    directory: Path, card: Mapping[str, Any], expected: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The SHA-256 of every weights file the card names, checked against the card and against
    what the model version recorded (`expected`). Raises FileNotFoundError for a missing file and
    WeightsIntegrityError for any mismatch."""
    members = card_members(card)
    if expected and set(expected) != set(members):
        raise WeightsIntegrityError(
            f"the model directory names {sorted(members)}; its model version recorded {sorted(expected)}"
        )
    hashes: dict[str, str] = {}
    for name, recorded in members.items():
        path = directory / name
        if not path.is_file():
            raise FileNotFoundError(f"no {name} in {directory}")
        actual = file_sha256(path)
        for owner, wanted in (("its card", recorded), ("its model version", (expected or {}).get(name))):
            if wanted and wanted != actual:
                raise WeightsIntegrityError(
                    f"{name} does not match {owner} (SHA-256 {actual[:12]}…, recorded {wanted[:12]}…): "
                    "the weights were changed; refusing to classify with them"
                )
        hashes[name] = actual
    return hashes


def files_state(directory: Path) -> tuple[tuple[str, int, int], ...]:
    """(name, mtime, size) of the card and of every weights file it names: what tells that a
    model directory changed on disk. Raises FileNotFoundError for a missing weights file."""
    state = []
    for name in [CARD_FILE, *card_members(read_card(directory))]:
        try:
            stat = (directory / name).stat()
        except FileNotFoundError:
            if name == CARD_FILE:
                continue
            raise FileNotFoundError(f"no {name} in {directory}") from None
        state.append((name, stat.st_mtime_ns, stat.st_size))
    return tuple(state)
