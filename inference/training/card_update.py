"""Measured figures added to a model card in place (card.json and its Markdown), for what is
measured apart from the cross-validation run: the lung fields check and the heat inside them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..artifacts import CARD_FILE
from .cv_card import write_cv_card


def card_update(weights_dir: Path, entries: dict[str, Any]) -> None:
    path = Path(weights_dir) / CARD_FILE
    card = json.loads(path.read_text())
    card.update(entries)
    write_cv_card(Path(weights_dir), card)


def intervals_update(weights_dir: Path, data_dir: Path) -> dict[str, Any]:
    """The card's 95% intervals recomputed from its saved out-of-fold predictions, with the card's
    own temperature and study rule, and stored in it."""
    import numpy as np

    from ..study import StudyRule
    from .data import read_manifest
    from .ensemble import CV_PREDICTIONS
    from .intervals import card_intervals

    card = json.loads((Path(weights_dir) / CARD_FILE).read_text())
    cv = dict(np.load(Path(weights_dir) / CV_PREDICTIONS, allow_pickle=False))
    by_path = {record.path: record for record in read_manifest(data_dir)}
    sequences = np.array([by_path[str(p)].sequence for p in cv["paths"]])
    intervals = card_intervals(
        cv,
        sequences=sequences,
        temperature=float(card["calibration"]["temperature"]),
        rule=StudyRule.from_card(card),
        assessability=card.get("assessability"),
    )
    card_update(weights_dir, {"intervals": intervals})
    return intervals
