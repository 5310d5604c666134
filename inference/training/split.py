"""The patient-disjoint split: contiguous blocks of `sequence` within each class (train lowest,
then validation, then test highest), each cut snapped to the likeliest boundary between two
patients, with a leakage check for the card."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..preprocessing import CLASS_NAMES
from .data import Record

SPLITS = ("train", "val", "test")


def thumbnail_vectors(images: np.ndarray, side: int = 64) -> np.ndarray:
    """Zero-mean, unit-norm vectors of block-averaged thumbnails (about `side` pixels square) for
    correlating neighbouring slices (any image size)."""
    n, height, width = images.shape
    factor = max(1, min(height, width) // side)
    h, w = (height // factor) * factor, (width // factor) * factor
    small = images[:, :h, :w].reshape(n, h // factor, factor, w // factor, factor).mean(axis=(2, 4))
    flat = small.reshape(n, -1).astype(np.float64)
    flat -= flat.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(flat, axis=1, keepdims=True)
    return flat / np.where(norms == 0, 1, norms)


def _snapped_cuts(
    n: int, neighbour_corr: np.ndarray, fractions: tuple[float, float, float], snap_window: float
) -> list[int]:
    """Positions of the cuts in a class of `n` slices (a cut at k means positions < k are before
    it), each moved within the window to the least-correlated neighbouring pair."""
    cuts: list[int] = []
    n_cuts = len(fractions) - 1
    lower = 1
    for j, cumulative in enumerate(np.cumsum(fractions)[:-1]):
        target = int(round(cumulative * n))
        # Leave at least one slice for every later block (where there are enough slices).
        upper = n - (n_cuts - j) if n > n_cuts else n
        target = min(max(target, lower), upper)
        window = max(1, int(round(snap_window * n)))
        lo, hi = max(lower, target - window), min(upper, target + window)
        if lo > hi or n < 3:
            cut = min(max(target, lower), n)
        else:
            cut = min(range(lo, hi + 1), key=lambda k: (neighbour_corr[k - 1], abs(k - target)))
        cuts.append(cut)
        lower = min(cut + 1, n)
    return cuts


def _split_class(
    records: Sequence[Record],
    indices: list[int],
    vectors: np.ndarray,
    assignment: np.ndarray,
    *,
    fractions: tuple[float, float, float],
    snap_window: float,
) -> dict[str, Any]:
    """Assign the slices of one class (`indices`, sorted by sequence) to blocks in `assignment`;
    returns the class's description for the card."""
    n = len(indices)
    # neighbour_corr[k]: correlation between the k-th and (k+1)-th slice of the class.
    neighbour_corr = np.array([float(vectors[indices[k]] @ vectors[indices[k + 1]]) for k in range(n - 1)])
    cuts = _snapped_cuts(n, neighbour_corr, fractions, snap_window)
    cut_info = [
        {
            "after_sequence": records[indices[cut - 1]].sequence,
            "before_sequence": records[indices[cut]].sequence,
            "neighbour_correlation": round(float(neighbour_corr[cut - 1]), 3),
        }
        for cut in cuts
        if 0 < cut < n
    ]
    bounds = [0, *cuts, n]
    class_desc: dict[str, Any] = {"n": n, "cuts": cut_info}
    for split_index, split in enumerate(SPLITS):
        block = indices[bounds[split_index] : bounds[split_index + 1]]
        for i in block:
            assignment[i] = split_index
        sequences = [records[i].sequence for i in block]
        class_desc[split] = {
            "count": len(block),
            "sequence_range": [min(sequences), max(sequences)] if sequences else None,
        }
    class_desc["median_neighbour_correlation"] = (
        round(float(np.median(neighbour_corr)), 3) if len(neighbour_corr) else None
    )
    return class_desc


def _leakage_check(vectors: np.ndarray, assignment: np.ndarray) -> dict[str, Any] | None:
    """How similar each test slice is to its closest training slice (to compare with how similar
    consecutive slices of one patient are); None where either block is empty."""
    train_idx = np.flatnonzero(assignment == 0)
    test_idx = np.flatnonzero(assignment == 2)
    if not (len(train_idx) and len(test_idx)):
        return None
    nearest = (vectors[test_idx] @ vectors[train_idx].T).max(axis=1)
    return {
        "test_to_nearest_train_correlation_median": round(float(np.median(nearest)), 3),
        "test_to_nearest_train_correlation_max": round(float(nearest.max()), 3),
        "test_slices_with_nearest_train_correlation_over_0.95": int((nearest > 0.95).sum()),
    }


def patient_block_split(
    records: Sequence[Record],
    images: np.ndarray,
    *,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    snap_window: float = 0.05,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Assign each record to train (0), val (1) or test (2) by contiguous blocks of `sequence`
    within each class: the lowest numbers train, the highest test.

    Each cut is moved, within `snap_window` of the class's size, to the pair of neighbouring
    slices that correlate least: the likeliest boundary between two patients, so that one
    patient is less likely to straddle two blocks. Returns the assignment and a description for
    the card.
    """
    if abs(sum(fractions) - 1) > 1e-6:
        raise ValueError("fractions must sum to 1")
    assignment = np.full(len(records), -1, dtype=np.int64)
    vectors = thumbnail_vectors(images)
    description: dict[str, Any] = {
        "method": (
            "contiguous blocks of `sequence` within each class (train lowest, test highest), "
            "byte-identical duplicates counted once, each cut moved to the least-correlated "
            f"neighbouring pair within ±{snap_window:.0%} of the class size"
        ),
        "fractions": dict(zip(SPLITS, fractions, strict=True)),
        "classes": {},
    }
    for label in CLASS_NAMES:
        indices = [i for i, r in enumerate(records) if r.label == label]
        indices.sort(key=lambda i: records[i].sequence)
        if not indices:
            continue
        description["classes"][label] = _split_class(
            records, indices, vectors, assignment, fractions=fractions, snap_window=snap_window
        )
    leakage = _leakage_check(vectors, assignment)
    if leakage is not None:
        description["leakage_check"] = leakage
    return assignment, description
