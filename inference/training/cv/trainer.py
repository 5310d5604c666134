"""The trainer: one built and compiled Keras model that every fold reuses, restored to its
initial model and optimizer variables before each fold. It is fed uint8 slices (converted to the
network's input on the device) and returns the "dense" features with the probabilities."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from ...preprocessing import CLASS_NAMES

FEATURE_LAYER = "dense"

# Wraps every held-out prediction (`run_cv(predict_context=...)`).
PredictContext = Callable[[], AbstractContextManager[Any]]


def _gray_input_layer(name: str) -> Any:
    """uint8 (B, H, W) -> float32 (B, H, W, 3) in [0, 1] on the device, exactly as
    `gray_to_input` does on the host (so only uint8 crosses to the device)."""
    import keras

    class GrayToInput(keras.layers.Layer):
        def call(self, inputs: Any) -> Any:
            x = keras.ops.cast(inputs, "float32") / 255.0
            return keras.ops.repeat(keras.ops.expand_dims(x, -1), 3, axis=-1)

        def compute_output_shape(self, input_shape: Any) -> Any:
            return (*input_shape, 3)

    return GrayToInput(name=name)


class _Trainer:
    """One built and compiled model, reused for every fold. `base` is the network as
    `build_model` makes it; `train_model` feeds it uint8 slices; `eval_model` returns the
    "dense" features and the probabilities."""

    def __init__(
        self,
        variant: str,
        size: int,
        *,
        dropout: float,
        seed: int,
        learning_rate: float,
        batch_size: int,
        predict_context: PredictContext | None = None,
    ) -> None:
        import keras

        from ...network import build_model

        self.batch_size = batch_size
        self.predict_context = predict_context or contextlib.nullcontext
        self.base = build_model(variant, dropout=dropout, seed=seed, input_size=size)
        if keras.backend.backend() == "jax":
            # Keras marks RandomTranslation/Rotation/Zoom `supports_jit = False` (TensorFlow's
            # projective-transform op does not compile with XLA), which would leave the whole
            # JAX train step unjitted: op by op, retraced every step. Their JAX implementation
            # (map_coordinates) compiles and gives the same results.
            for layer in self.base.layers:
                layer.supports_jit = True
        raw = keras.Input(shape=(size, size), dtype="uint8", name="gray")
        self.train_model = keras.Model(raw, self.base(_gray_input_layer("to_input")(raw)), name="cv_train")
        features = keras.Model(
            self.base.inputs,
            [self.base.get_layer(FEATURE_LAYER).output, self.base.output],
            name="cv_features",
        )
        raw_eval = keras.Input(shape=(size, size), dtype="uint8", name="gray_eval")
        self.eval_model = keras.Model(raw_eval, features(_gray_input_layer("to_input_eval")(raw_eval)))
        self.optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
        self.train_model.compile(
            optimizer=self.optimizer,
            loss="categorical_crossentropy",
            # XLA was slower for these convolutions on the CPU with TensorFlow; JAX always jits.
            jit_compile=keras.backend.backend() != "tensorflow",
        )
        self.optimizer.build(self.train_model.trainable_variables)
        # Everything a fold changes: weights, batch-norm statistics, augmentation seeds, and the
        # optimizer's moments, iteration count and learning rate.
        self._variables = [*self.train_model.variables, *self.optimizer.variables]
        self._initial = [keras.ops.convert_to_numpy(v) for v in self._variables]

    def reset(self) -> None:
        for variable, value in zip(self._variables, self._initial, strict=True):
            variable.assign(value)

    def weights(self) -> list[np.ndarray]:
        return [np.asarray(w) for w in self.base.get_weights()]

    def train_epoch(
        self, gray: np.ndarray, labels: np.ndarray, index: np.ndarray, class_weight: np.ndarray, rng: Any
    ) -> float:
        """One pass over `index` (shuffled; the last batch filled up with slices from the start of
        the permutation so every batch has the same shape and compiles once). The mean loss."""
        n_batches = math.ceil(len(index) / self.batch_size)
        order = np.resize(rng.permutation(index), n_batches * self.batch_size)
        one_hot = np.eye(len(CLASS_NAMES), dtype=np.float32)
        losses = []
        for b in range(n_batches):
            batch = order[b * self.batch_size : (b + 1) * self.batch_size]
            y = labels[batch]
            logs = self.train_model.train_on_batch(
                gray[batch], one_hot[y], sample_weight=class_weight[y].astype(np.float32), return_dict=True
            )
            losses.append(float(logs["loss"]))
        return float(np.mean(losses))

    def predict(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(features (N, 64), probabilities (N, 3)) at inference, in full batches."""
        features, probs = [], []
        for start in range(0, len(gray), self.batch_size):
            chunk = gray[start : start + self.batch_size]
            m = len(chunk)
            if m < self.batch_size:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.batch_size - m, axis=0)])
            with self.predict_context():
                f, p = self.eval_model.predict_on_batch(chunk)
            features.append(np.asarray(f, dtype=np.float32)[:m])
            probs.append(np.asarray(p, dtype=np.float32)[:m])
        return np.concatenate(features), np.concatenate(probs)
