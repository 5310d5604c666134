"""What a model directory holds and how its weights are identified.

A model directory (written by `inference.training`, registered by `inference.services`, loaded by
`inference.predictor`) holds the weights, a JSON card describing them, the card rendered as
Markdown and two PNG plots. The SHA-256 of the weights file identifies a model version: model
versions, cards and the predictor agree on it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

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
