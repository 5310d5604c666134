"""Fitting the network: the run's settings, seeds, the tf.data pipeline, the Keras fit with
early stopping, and predictions on preprocessed slices. TensorFlow and Keras are imported only
when a function here runs."""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..preprocessing import CLASS_NAMES, gray_to_input
from .data import Printer


@dataclasses.dataclass
class TrainConfig:
    data_dir: Path
    out_dir: Path
    variant: str = "improved"
    epochs: int = 40
    batch_size: int = 32
    learning_rate: float = 1e-3
    patience: int = 8
    dropout: float = 0.5
    seed: int = 1234
    limit: int | None = None
    class_weights: bool = True
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    cache_dir: Path | None = None
    compare_with: Sequence[Path] = ()
    command: str = ""


@dataclasses.dataclass(frozen=True)
class FitResult:
    """A fitted model (best weights restored) and what the card says about the fit."""

    model: Any
    history: dict[str, list[float]]
    monitor: str
    best_epoch: int | None
    epochs_run: int
    seconds: float


def set_seeds(seed: int) -> None:
    import keras
    import tensorflow as tf

    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    keras.utils.set_random_seed(seed)
    try:
        tf.config.experimental.enable_op_determinism()
    except Exception:  # older TF or already configured
        pass


def make_dataset(
    gray: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int,
    weights: np.ndarray | None = None,
) -> Any:
    """tf.data pipeline: uint8 grayscale -> float32 [0,1] with 3 channels, exactly as
    `gray_to_input` (and so `preprocess`) does."""
    import tensorflow as tf

    one_hot = np.eye(len(CLASS_NAMES), dtype=np.float32)[labels]
    tensors: tuple[Any, ...] = (gray, one_hot)
    if weights is not None:
        tensors = (gray, one_hot, weights.astype(np.float32))
    dataset = tf.data.Dataset.from_tensor_slices(tensors)
    if shuffle:
        dataset = dataset.shuffle(len(gray), seed=seed, reshuffle_each_iteration=True)

    def to_input(image: Any, *rest: Any) -> Any:
        x = tf.cast(image, tf.float32) / 255.0
        x = tf.repeat(x[..., tf.newaxis], 3, axis=-1)
        return (x, *rest)

    return dataset.batch(batch_size).map(to_input, num_parallel_calls=1).prefetch(1)


def predict_probabilities(model: Any, gray: np.ndarray, *, batch_size: int = 32) -> np.ndarray:
    """Probabilities for uint8 grayscale slices (N, 256, 256)."""
    outputs = []
    for start in range(0, len(gray), batch_size):
        batch = gray_to_input(gray[start : start + batch_size])
        outputs.append(np.asarray(model(batch, training=False)))
    if not outputs:
        return np.zeros((0, len(CLASS_NAMES)), dtype=np.float32)
    return np.concatenate(outputs, axis=0)


def fit_model(
    config: TrainConfig,
    gray: np.ndarray,
    labels: np.ndarray,
    assignment: np.ndarray,
    class_weights: dict[int, float],
    *,
    echo: Printer = print,
) -> FitResult:
    """Build and compile `config.variant`, fit it on the training block with early stopping on
    the validation block (where there is one), keep the best epoch's weights."""
    import keras

    from ..network import build_model

    train_mask, val_mask = assignment == 0, assignment == 1
    model = build_model(config.variant, dropout=config.dropout, seed=config.seed)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=False,  # XLA was slower for these convolutions on CPU
    )
    weight_array = np.array([class_weights[int(c)] for c in labels], dtype=np.float32)
    train_ds = make_dataset(
        gray[train_mask],
        labels[train_mask],
        batch_size=config.batch_size,
        shuffle=True,
        seed=config.seed,
        weights=weight_array[train_mask],
    )
    val_ds = None
    if val_mask.any():
        # Validation loss weighted like the training loss, so early stopping watches the same
        # balanced objective rather than the majority classes.
        val_ds = make_dataset(
            gray[val_mask],
            labels[val_mask],
            batch_size=config.batch_size,
            shuffle=False,
            seed=config.seed,
            weights=weight_array[val_mask],
        )

    monitor = "val_loss" if val_ds is not None else "loss"
    callbacks = _callbacks(config, monitor, echo, val_gray=gray[val_mask], val_labels=labels[val_mask])
    fit_started = time.monotonic()
    history = model.fit(
        train_ds, validation_data=val_ds, epochs=config.epochs, callbacks=callbacks, shuffle=False, verbose=0
    )  # the dataset shuffles itself, seeded
    fit_seconds = time.monotonic() - fit_started
    hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    monitored = hist.get(monitor, [])
    best_epoch = int(np.argmin(monitored)) + 1 if monitored else None
    epochs_run = len(hist.get("loss", []))
    echo(f"trained {epochs_run} epochs in {fit_seconds:.0f}s; kept the weights of epoch {best_epoch}")
    return FitResult(
        model=model,
        history=hist,
        monitor=monitor,
        best_epoch=best_epoch,
        epochs_run=epochs_run,
        seconds=fit_seconds,
    )


def _callbacks(
    config: TrainConfig, monitor: str, echo: Printer, *, val_gray: np.ndarray, val_labels: np.ndarray
) -> list[Any]:
    """Early stopping (best weights restored), the epoch printer, and, except for the published
    design, halving the learning rate on a plateau."""
    import keras

    callbacks: list[Any] = [
        keras.callbacks.EarlyStopping(
            monitor=monitor, patience=config.patience, restore_best_weights=True, verbose=0
        ),
        _EpochPrinter(echo, config.epochs, val_gray=val_gray, val_labels=val_labels),
    ]
    if config.variant != "published":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=monitor, factor=0.5, patience=max(2, config.patience // 2), min_lr=1e-5, verbose=0
            )
        )
    return callbacks


class _EpochPrinter:
    """Keras callback printing one line per epoch (duck-typed so keras is imported lazily)."""

    def __new__(cls, echo: Printer, total: int, *, val_gray: np.ndarray, val_labels: np.ndarray) -> Any:
        import keras

        class EpochPrinter(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                self._started = time.monotonic()

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                logs = logs if logs is not None else {}
                if len(val_labels):
                    # Balanced accuracy is what the card reports; watch it, although early
                    # stopping follows the (class-weighted) validation loss.
                    predicted = predict_probabilities(self.model, val_gray).argmax(axis=1)
                    recalls = [float((predicted[val_labels == c] == c).mean()) for c in np.unique(val_labels)]
                    logs["val_balanced_accuracy"] = float(np.mean(recalls))
                parts = [f"epoch {epoch + 1:>3}/{total}"]
                for key in ("loss", "accuracy", "val_loss", "val_accuracy", "val_balanced_accuracy"):
                    if key in logs:
                        parts.append(f"{key} {float(logs[key]):.4f}")
                lr = getattr(self.model.optimizer, "learning_rate", None)
                if lr is not None:
                    parts.append(f"lr {float(np.asarray(lr)):.1e}")
                parts.append(f"{time.monotonic() - self._started:.0f}s")
                echo("  ".join(parts))
                sys.stdout.flush()

        return EpochPrinter()
