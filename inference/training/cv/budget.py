"""The wall-clock budget of a cross-validation run: the epochs each fold trains, cut during the
first fold where they would not fit, and whether a fold can still start or finish in time."""

from __future__ import annotations

import math
import time

import numpy as np

from ..data import Printer


class _Budget:
    """The wall-clock budget: how many epochs each fold trains, and whether a fold can still
    start or finish before the deadline (time.monotonic()). With `adapt`, the epochs of every
    fold are cut during the first fold where the measured epoch time says they would not fit."""

    def __init__(
        self,
        *,
        epochs: int,
        n_folds: int,
        deadline: float | None,
        adapt: bool,
        min_epochs: int,
        echo: Printer,
    ) -> None:
        self.epochs = epochs
        self.n_folds = n_folds
        self.deadline = deadline
        self.adapt = adapt
        self.min_epochs = min_epochs
        self.echo = echo
        self.times: list[float] = []
        self.notes: list[str] = []

    def left(self) -> float:
        return math.inf if self.deadline is None else self.deadline - time.monotonic()

    def epoch_estimate(self) -> float | None:
        """Seconds per epoch with a 10% margin: the median of the last five (the run's first
        epoch compiles; a median ignores another slow one)."""
        steady = self.times[1:]
        return float(np.median(steady[-5:])) * 1.1 if steady else None

    def can_start_fold(self) -> bool:
        estimate = self.epoch_estimate()
        return self.left() > (estimate * self.epochs if estimate is not None else 0.0)

    def after_epoch(self, position: int, done: int, seconds: float) -> bool:
        """Record an epoch; False where the fold cannot finish its remaining epochs in time."""
        self.times.append(seconds)
        estimate = self.epoch_estimate()
        if estimate is None or self.deadline is None:
            return self.left() > 0
        if self.adapt and position == 0:
            self._maybe_reduce(done, estimate)
        remaining = self.epochs - done
        return remaining <= 0 or self.left() > remaining * estimate

    def _maybe_reduce(self, done: int, estimate: float) -> None:
        # Remaining epochs with E per fold: (E - done) in this fold + (n_folds - 1) * E.
        left = self.left()
        if (self.n_folds * self.epochs - done) * estimate <= left:
            return
        # 5% below what fits, so that small changes in the epoch time do not cut again and again.
        fitting = int(0.95 * (left / estimate + done) / self.n_folds)
        new = max(fitting, self.min_epochs, done)
        if new < self.epochs:
            note = (
                f"budget: {estimate:.1f}s per epoch and {left:.0f}s left: every fold trains {new} epochs "
                f"instead of {self.epochs}"
            )
            self.notes.append(note)
            self.echo(note)
            self.epochs = new
