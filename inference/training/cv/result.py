"""What a cross-validation run returns: each fold's outcome, and `CVResult` assembled from them
with E*, the epoch that minimises the fold-averaged validation loss."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ...preprocessing import CLASS_NAMES


@dataclasses.dataclass
class _FoldOutcome:
    fold: int
    val_index: np.ndarray
    val_loss: list[float] = dataclasses.field(default_factory=list)
    val_balanced_accuracy: list[float] = dataclasses.field(default_factory=list)
    train_loss: list[float] = dataclasses.field(default_factory=list)
    epoch_seconds: list[float] = dataclasses.field(default_factory=list)
    probs: list[np.ndarray] = dataclasses.field(default_factory=list)
    features: list[np.ndarray] = dataclasses.field(default_factory=list)
    weights: list[list[np.ndarray]] = dataclasses.field(default_factory=list)
    completed: bool = False
    seconds: float = 0.0


@dataclasses.dataclass
class CVResult:
    """What `run_cv` returns. Arrays over folds are indexed by `fold_ids` order (fold k at row k
    when the folds are 0..k-1); NaN where a fold or epoch did not run."""

    variant: str
    image_size: int
    epochs: int  # epochs every fold trained (fewer than requested where the budget cut them)
    epochs_requested: int
    chosen_epoch: int  # E*, 1-based; 0 where no fold completed
    fold_ids: np.ndarray  # (k,)
    completed_folds: np.ndarray  # fold ids whose epochs all ran
    fold_of: np.ndarray  # (n,)
    labels: np.ndarray  # (n,)
    val_loss: np.ndarray  # (k, epochs) class-weighted log loss of the held-out fold
    val_balanced_accuracy: np.ndarray  # (k, epochs)
    train_loss: np.ndarray  # (k, epochs)
    epoch_seconds: np.ndarray  # (k, epochs), training and held-out prediction
    mean_val_loss: np.ndarray  # (epochs,) over the completed folds
    oof_probs: np.ndarray  # (n, 3) at E*, NaN outside the completed folds
    oof_probs_by_epoch: np.ndarray  # (n, epochs, 3)
    oof_features: np.ndarray  # (n, 64) the "dense" output at E*
    fold_weights: dict[int, list[np.ndarray]]  # fold -> base model's get_weights() at E*
    settings: dict[str, Any]
    stop_reason: str  # "completed", "deadline: ..." or "error: ..."
    seconds: float


def _fill(rows: list[list[float]], width: int) -> np.ndarray:
    out = np.full((len(rows), width), np.nan)
    for r, values in enumerate(rows):
        m = min(width, len(values))
        out[r, :m] = values[:m]
    return out


def _assemble(
    outcomes: list[_FoldOutcome], labels: np.ndarray, fold_ids: list[int], epochs: int
) -> dict[str, Any]:
    """The arrays of CVResult from the folds' outcomes; E* over the completed folds."""
    by_fold = {o.fold: o for o in outcomes}
    empty: list[float] = []
    rows = [by_fold[f] if f in by_fold else None for f in fold_ids]
    val_loss = _fill([o.val_loss if o else empty for o in rows], epochs)
    completed = [o for o in outcomes if o.completed]
    done_rows = [fold_ids.index(o.fold) for o in completed]
    mean_val_loss = val_loss[done_rows].mean(axis=0) if done_rows else np.full(epochs, np.nan)
    chosen = int(np.argmin(mean_val_loss)) + 1 if done_rows else 0
    n = len(labels)
    oof_by_epoch = np.full((n, epochs, len(CLASS_NAMES)), np.nan, dtype=np.float32)
    for o in outcomes:
        m = min(epochs, len(o.probs))
        if m:
            oof_by_epoch[o.val_index, :m] = np.stack(o.probs[:m], axis=1)
    n_features = completed[0].features[0].shape[1] if completed else 0
    oof_probs = np.full((n, len(CLASS_NAMES)), np.nan, dtype=np.float32)
    oof_features = np.full((n, n_features), np.nan, dtype=np.float32)
    fold_weights: dict[int, list[np.ndarray]] = {}
    for o in completed:
        oof_probs[o.val_index] = o.probs[chosen - 1]
        oof_features[o.val_index] = o.features[chosen - 1]
        fold_weights[o.fold] = o.weights[chosen - 1]
    return {
        "chosen_epoch": chosen,
        "completed_folds": np.array([o.fold for o in completed], dtype=np.int64),
        "val_loss": val_loss,
        "val_balanced_accuracy": _fill([o.val_balanced_accuracy if o else empty for o in rows], epochs),
        "train_loss": _fill([o.train_loss if o else empty for o in rows], epochs),
        "epoch_seconds": _fill([o.epoch_seconds if o else empty for o in rows], epochs),
        "mean_val_loss": mean_val_loss,
        "oof_probs": oof_probs,
        "oof_probs_by_epoch": oof_by_epoch,
        "oof_features": oof_features,
        "fold_weights": fold_weights,
    }
