"""The ensemble's forward pass on TensorFlow Lite (XNNPACK), converted at load from the same Keras
weights: faster than the Keras serving path on these CPUs, with the same calibrated probabilities
(docs/benchmarks.md has the figures; tests/inference/test_lite.py holds them to 1e-4). Grad-CAM
still runs on Keras, which has the gradients."""

from __future__ import annotations

import contextlib
import io
import threading
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np


class LiteEnsemble:
    """Each member as a TFLite interpreter; `forward(batch)` is the members' mean probabilities."""

    def __init__(self, members: Sequence[Any], *, threads: int | None) -> None:
        import tensorflow as tf

        self.interpreters = []
        for member in members:
            # The converter prints the signature it exports and warns that tf.lite moves to LiteRT.
            with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                flat = tf.lite.TFLiteConverter.from_keras_model(member).convert()
                self.interpreters.append(tf.lite.Interpreter(model_content=flat, num_threads=threads))
        self._io = [
            (i.get_input_details()[0]["index"], i.get_output_details()[0]["index"]) for i in self.interpreters
        ]
        self._sizes: dict[int, int] = {}
        self._lock = threading.Lock()  # an interpreter serves one call at a time

    def forward(self, batch: np.ndarray) -> np.ndarray:
        total = np.zeros((len(batch), 3), dtype=np.float64)
        with self._lock:
            for number, (interpreter, (entry, out)) in enumerate(
                zip(self.interpreters, self._io, strict=True)
            ):
                if self._sizes.get(number) != len(batch):
                    interpreter.resize_tensor_input(entry, list(batch.shape))
                    interpreter.allocate_tensors()
                    self._sizes[number] = len(batch)
                interpreter.set_tensor(entry, np.ascontiguousarray(batch, dtype=np.float32))
                interpreter.invoke()
                total += interpreter.get_tensor(out)
        return total / len(self.interpreters)
