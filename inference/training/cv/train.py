"""The cross-validation run (`run_cv`). One model is built and compiled once and reused for every
fold: before each fold the model's initial variables and the optimizer's initial variables are
restored. Each fold trains a fixed number of epochs with class-weighted loss (weights from the
fold's training part). After every epoch the held-out fold is predicted (probabilities,
class-weighted log loss, the "dense" features) and the weights are kept in memory. Afterwards
one epoch count E* is chosen, the argmin of the fold-averaged validation loss, and the
out-of-fold (OOF) predictions and each fold's weights at E* are returned."""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Sequence

import numpy as np

from ..data import Printer
from .budget import _Budget
from .result import CVResult, _assemble, _FoldOutcome
from .scores import balanced_accuracy, class_weight_array, weighted_log_loss
from .trainer import PredictContext, _Trainer


def _run_fold(
    trainer: _Trainer,
    gray: np.ndarray,
    labels: np.ndarray,
    folds: np.ndarray,
    fold: int,
    position: int,
    budget: _Budget,
    *,
    seed: int,
    echo: Printer,
) -> _FoldOutcome:
    started = time.monotonic()
    train_index, val_index = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
    class_weight = class_weight_array(labels[train_index])
    val_gray, val_labels = gray[val_index], labels[val_index]
    trainer.reset()
    rng = np.random.default_rng([seed, fold])
    outcome = _FoldOutcome(fold=fold, val_index=val_index)
    echo(
        f"fold {fold} ({position + 1}/{budget.n_folds}): {len(train_index)} training, {len(val_index)} "
        f"held-out slices; class weights {np.round(class_weight, 3).tolist()}"
    )
    while len(outcome.val_loss) < budget.epochs:
        epoch_started = time.monotonic()
        train_loss = trainer.train_epoch(gray, labels, train_index, class_weight, rng)
        trained = time.monotonic()
        features, probs = trainer.predict(val_gray)
        outcome.train_loss.append(train_loss)
        outcome.val_loss.append(weighted_log_loss(probs, val_labels, class_weight))
        outcome.val_balanced_accuracy.append(balanced_accuracy(probs, val_labels))
        outcome.probs.append(probs)
        outcome.features.append(features)
        outcome.weights.append(trainer.weights())
        seconds = time.monotonic() - epoch_started
        outcome.epoch_seconds.append(seconds)
        done = len(outcome.val_loss)
        echo(
            f"fold {fold} epoch {done:>3}/{budget.epochs}  loss {train_loss:.4f}  val_loss "
            f"{outcome.val_loss[-1]:.4f}  val_bacc {outcome.val_balanced_accuracy[-1]:.3f}  {seconds:.1f}s "
            f"(train {trained - epoch_started:.1f}s)"
        )
        if not budget.after_epoch(position, done, seconds):
            echo(f"fold {fold}: stopped after {done} epochs, {budget.left():.0f}s left is too little")
            break
    outcome.completed = len(outcome.val_loss) >= budget.epochs
    outcome.seconds = time.monotonic() - started
    echo(f"fold {fold}: {len(outcome.val_loss)} epochs in {outcome.seconds:.0f}s")
    return outcome


def _check_inputs(
    gray: np.ndarray, labels: np.ndarray, folds: np.ndarray, epochs: int, batch_size: int
) -> None:
    if gray.dtype != np.uint8 or gray.ndim != 3 or gray.shape[1] != gray.shape[2]:
        raise ValueError(f"gray must be uint8 (N, size, size); got {gray.dtype} {gray.shape}")
    if not (len(gray) == len(labels) == len(folds)):
        raise ValueError("gray, labels and folds must have the same length")
    if len(np.unique(folds)) < 2:
        raise ValueError("cross-validation needs at least two folds")
    if epochs < 1 or batch_size < 1:
        raise ValueError("epochs and batch_size must be positive")


def run_cv(
    gray: np.ndarray,
    labels: np.ndarray,
    folds: np.ndarray,
    *,
    variant: str = "bn_gap",
    epochs: int = 40,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    dropout: float = 0.5,
    seed: int = 1234,
    echo: Printer = print,
    deadline: float | None = None,
    adapt_epochs: bool = False,
    min_epochs: int = 5,
    run_folds: Sequence[int] | None = None,
    predict_context: PredictContext | None = None,
) -> CVResult:
    """Cross-validate `variant` on uint8 slices `gray` (N, size, size) with the folds `folds`.

    One model is compiled once; each fold restores the initial model and optimizer variables,
    trains `epochs` epochs (class-weighted loss, augmentation inside the model, no early
    stopping), and after each epoch predicts its held-out slices. E* minimises the
    fold-averaged class-weighted validation loss.

    `deadline` (time.monotonic()): no fold starts, and a fold stops, when it could not finish
    before then; with `adapt_epochs` the epochs of all folds are cut during the first fold so
    that all fit (never below `min_epochs`). An exception in a fold ends the run with the folds
    completed before it (stop_reason says why). `run_folds` holds out only those folds (each
    still trains on all the others). `predict_context` wraps every held-out prediction (the
    device run predicts at full float32 precision there, whatever the training's)."""
    import keras

    gray, labels, folds = (
        np.asarray(gray),
        np.asarray(labels, dtype=np.int64),
        np.asarray(folds, dtype=np.int64),
    )
    _check_inputs(gray, labels, folds, epochs, batch_size)
    started = time.monotonic()
    keras.utils.set_random_seed(seed)
    fold_ids = [int(f) for f in np.unique(folds)]
    if run_folds is not None:
        if not set(run_folds) <= set(fold_ids):
            raise ValueError(f"folds {sorted(set(run_folds) - set(fold_ids))} hold no slice")
        fold_ids = sorted({int(f) for f in run_folds})
    budget = _Budget(
        epochs=epochs,
        n_folds=len(fold_ids),
        deadline=deadline,
        adapt=adapt_epochs,
        min_epochs=min_epochs,
        echo=echo,
    )
    settings = {
        "variant": variant,
        "image_size": int(gray.shape[1]),
        "epochs_requested": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "dropout": dropout,
        "seed": seed,
        "optimizer": "Adam",
        "loss": "categorical cross-entropy, class-weighted n/(k*n_c) from each fold's training part",
        "folds": fold_ids,
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
    }
    echo(f"cv: {len(gray)} slices at {gray.shape[1]} px, folds {fold_ids}, {json.dumps(settings)}")
    trainer = _Trainer(
        variant,
        int(gray.shape[1]),
        dropout=dropout,
        seed=seed,
        learning_rate=learning_rate,
        batch_size=batch_size,
        predict_context=predict_context,
    )
    outcomes: list[_FoldOutcome] = []
    stop_reason = "completed"
    try:
        for position, fold in enumerate(fold_ids):
            if not budget.can_start_fold():
                stop_reason = f"deadline: fold {fold} not started ({budget.left():.0f}s left)"
                break
            outcomes.append(
                _run_fold(trainer, gray, labels, folds, fold, position, budget, seed=seed, echo=echo)
            )
            if not outcomes[-1].completed:
                stop_reason = f"deadline: fold {fold} stopped after {len(outcomes[-1].val_loss)} epochs"
                break
    except Exception as exc:  # keep what the completed folds give; say why it stopped
        echo(traceback.format_exc())
        stop_reason = f"error: {type(exc).__name__}: {exc}"
    settings["budget_notes"] = budget.notes
    arrays = _assemble(outcomes, labels, fold_ids, budget.epochs)
    result = CVResult(
        variant=variant,
        image_size=int(gray.shape[1]),
        epochs=budget.epochs,
        epochs_requested=epochs,
        fold_ids=np.array(fold_ids, dtype=np.int64),
        fold_of=folds,
        labels=labels,
        settings=settings,
        stop_reason=stop_reason,
        seconds=time.monotonic() - started,
        **arrays,
    )
    _echo_summary(result, echo)
    return result


def _echo_summary(result: CVResult, echo: Printer) -> None:
    echo(f"stop: {result.stop_reason}; {result.seconds:.0f}s")
    if not result.chosen_epoch:
        echo("no fold completed: no E*")
        return
    e = result.chosen_epoch
    echo(f"E* = {e} of {result.epochs}: fold-mean val_loss {result.mean_val_loss[e - 1]:.4f}")
    for row, fold in enumerate(result.fold_ids):
        if fold in result.completed_folds:
            echo(
                f"  fold {fold}: val_loss {result.val_loss[row, e - 1]:.4f}  "
                f"val_bacc {result.val_balanced_accuracy[row, e - 1]:.3f}"
            )
    done = ~np.isnan(result.oof_probs[:, 0])
    echo(
        f"OOF at E*: {int(done.sum())} slices, balanced accuracy "
        f"{balanced_accuracy(result.oof_probs[done], result.labels[done]):.3f}"
    )
