"""Patient-grouped folds: within each class the records, sorted by `sequence`, are cut into k
contiguous blocks (slices of one patient are numbered consecutively), each cut moved to the
least-correlated pair of neighbouring slices nearby (`split._snapped_cuts`), so that a patient is
unlikely to straddle two folds. Every fold holds every class."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, cast

import numpy as np

from ...preprocessing import CLASS_NAMES
from ..data import Record
from ..split import _snapped_cuts, thumbnail_vectors

DEFAULT_K = 5
DEFAULT_SNAP_WINDOW = 0.05
# A cut moves at most this many slices (about one patient here): with ±5% of a large class the
# least-correlated pair can lie far enough away to unbalance the folds (52 to 99 normal slices).
DEFAULT_MAX_SHIFT = 12


def _class_indices(records: Sequence[Record], label: str) -> list[int]:
    indices = [i for i, r in enumerate(records) if r.label == label]
    indices.sort(key=lambda i: records[i].sequence)
    return indices


def grouped_folds(
    records: Sequence[Record],
    images: np.ndarray,
    k: int = DEFAULT_K,
    *,
    snap_window: float = DEFAULT_SNAP_WINDOW,
    max_shift: int = DEFAULT_MAX_SHIFT,
) -> np.ndarray:
    """The fold (0..k-1) of each record: within each class, records sorted by `sequence` are cut
    into k contiguous blocks of about equal size (fold 0 the lowest numbers), each cut moved
    within ±`snap_window` of the class's size, and at most `max_shift` slices, to the
    least-correlated neighbouring pair.

    `images` are the records' uint8 slices (N, H, W), any size. Raises ValueError where a class
    present has fewer than k records (a fold would miss it)."""
    if k < 2:
        raise ValueError("k must be at least 2")
    if len(images) != len(records):
        raise ValueError(f"{len(records)} records but {len(images)} images")
    folds = np.full(len(records), -1, dtype=np.int64)
    vectors = thumbnail_vectors(images)
    # `_snapped_cuts` takes any number of fractions although it is annotated with three.
    fractions = cast(tuple[float, float, float], tuple([1.0 / k] * k))
    for label in CLASS_NAMES:
        indices = _class_indices(records, label)
        if not indices:
            continue
        if len(indices) < k:
            raise ValueError(f"class {label!r} has {len(indices)} records, fewer than {k} folds")
        neighbour_corr = np.array([float(vectors[a] @ vectors[b]) for a, b in itertools.pairwise(indices)])
        window = min(snap_window, max_shift / len(indices))
        cuts = _snapped_cuts(len(indices), neighbour_corr, fractions, window)
        bounds = [0, *cuts, len(indices)]
        for fold in range(k):
            folds[indices[bounds[fold] : bounds[fold + 1]]] = fold
    return folds


def fold_summary(
    records: Sequence[Record], folds: np.ndarray, images: np.ndarray | None = None
) -> dict[str, Any]:
    """Per class and fold: the count and the sequence range; with `images`, the correlation of
    the neighbouring pair at each cut (low means a likely patient boundary). For the card."""
    vectors = thumbnail_vectors(images) if images is not None else None
    classes: dict[str, Any] = {}
    for label in CLASS_NAMES:
        indices = _class_indices(records, label)
        if not indices:
            continue
        blocks = []
        for fold in range(int(folds.max()) + 1):
            sequences = [records[i].sequence for i in indices if folds[i] == fold]
            blocks.append(
                {"fold": fold, "count": len(sequences), "sequence_range": [min(sequences), max(sequences)]}
                if sequences
                else {"fold": fold, "count": 0, "sequence_range": None}
            )
        cut_corr = []
        if vectors is not None:
            pairs = [(a, b) for a, b in itertools.pairwise(indices) if folds[a] != folds[b]]
            cut_corr = [round(float(vectors[a] @ vectors[b]), 3) for a, b in pairs]
        classes[label] = {"n": len(indices), "folds": blocks, "cut_neighbour_correlation": cut_corr}
    return {
        "method": (
            "contiguous blocks of `sequence` within each class, byte-identical duplicates counted once, "
            "each cut moved to the least-correlated neighbouring pair within "
            f"±{DEFAULT_SNAP_WINDOW:.0%} of the class size and at most {DEFAULT_MAX_SHIFT} slices"
        ),
        "k": int(folds.max()) + 1,
        "classes": classes,
    }
