"""Serving: load weights once per process, classify batches, explain with Grad-CAM.

TensorFlow is imported only when a Predictor is built, never at import time: the web process
imports this module (for `heatmap_png`) without paying for TensorFlow.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .artifacts import CARD_FILE, WEIGHTS_FILE, file_sha256
from .preprocessing import CLASS_NAMES, IMAGE_SIZE

_cache: dict[tuple[str, int, int], Predictor] = {}
_cache_lock = threading.Lock()


class Predictor:
    """A loaded model. Build it with `get_predictor`, which caches one per weights folder."""

    def __init__(self, weights_dir: Path | str, *, batch_size: int | None = None) -> None:
        from .runtime import configure_tensorflow

        self.weights_dir = Path(weights_dir).resolve()
        self.weights_path = self.weights_dir / WEIGHTS_FILE
        if not self.weights_path.is_file():
            raise FileNotFoundError(f"no {WEIGHTS_FILE} in {self.weights_dir}")
        card_path = self.weights_dir / CARD_FILE
        self.card: dict[str, Any] = json.loads(card_path.read_text()) if card_path.is_file() else {}
        self.sha256: str = file_sha256(self.weights_path)
        self.name: str = str(self.card.get("name") or f"model-{self.sha256[:12]}")
        if batch_size is None:
            batch_size = _setting("INFERENCE_BATCH_SIZE", 16)
        self.batch_size = max(1, int(batch_size))

        configure_tensorflow()
        import keras
        import tensorflow as tf

        from .network import last_conv_layer_name

        self.model = keras.models.load_model(self.weights_path, compile=False)
        spec = tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 3], tf.float32)
        model = self.model
        # One compiled graph for every batch size: no per-call retracing, no model.predict overhead.
        self._forward = tf.function(lambda x: model(x, training=False), input_signature=[spec])

        # Grad-CAM: the last convolution's feature maps and the class scores *before* softmax
        # (gradients of a saturated probability vanish).
        head = model.get_layer("probabilities")
        conv_name = last_conv_layer_name(model)
        explainer = keras.Model(model.inputs, [model.get_layer(conv_name).output, head.input])
        kernel, bias = head.kernel, head.bias

        def gradcam(x: Any) -> Any:
            with tf.GradientTape() as tape:
                features, hidden = explainer(x, training=False)
                tape.watch(features)
                logits = tf.matmul(hidden, kernel) + bias
                target = tf.argmax(logits[0])
                score = logits[0, target]
            grads = tape.gradient(score, features)
            channel_weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
            cam = tf.nn.relu(tf.reduce_sum(features * channel_weights, axis=-1, keepdims=True))
            cam = tf.image.resize(cam, (IMAGE_SIZE, IMAGE_SIZE), method="bilinear")[0, :, :, 0]
            peak = tf.reduce_max(cam)
            return tf.where(peak > 0, cam / tf.maximum(peak, 1e-12), tf.zeros_like(cam))

        self._gradcam = tf.function(gradcam, input_signature=[spec])
        self.conv_layer = conv_name

    def __repr__(self) -> str:
        return f"<Predictor {self.name} {self.sha256[:12]}>"

    @staticmethod
    def _as_batch(images: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        array = np.asarray(images, dtype=np.float32)
        if array.ndim == 3:
            array = array[np.newaxis]
        if array.ndim != 4 or array.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 3):
            raise ValueError(
                f"expected images of shape ({IMAGE_SIZE}, {IMAGE_SIZE}, 3) from preprocess(), got "
                f"{array.shape[1:] if array.ndim == 4 else array.shape}"
            )
        return array

    def predict(self, images: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """Probabilities (n, 3), columns in CLASS_NAMES order, rows summing to 1; the images are
        `preprocess` outputs, run in batches of settings.INFERENCE_BATCH_SIZE."""
        if len(images) == 0:
            return np.zeros((0, len(CLASS_NAMES)), dtype=np.float64)
        batch = self._as_batch(images)
        outputs = [
            self._forward(batch[start : start + self.batch_size]).numpy()
            for start in range(0, len(batch), self.batch_size)
        ]
        probabilities = np.concatenate(outputs, axis=0).astype(np.float64)
        return probabilities / probabilities.sum(axis=1, keepdims=True)

    def labels(self, probabilities: np.ndarray) -> list[str]:
        return [CLASS_NAMES[i] for i in np.asarray(probabilities).argmax(axis=1)]

    def heatmap(self, image: np.ndarray) -> np.ndarray:
        """Grad-CAM for the predicted class on the last convolution: float32 (256, 256) in [0, 1],
        aligned with the (padded, resized) model input."""
        batch = self._as_batch(image)
        if len(batch) != 1:
            raise ValueError("heatmap() explains one image at a time")
        return self._gradcam(batch).numpy().astype(np.float32)


def heatmap_png(image: np.ndarray, heat: np.ndarray, *, alpha: float = 0.45) -> bytes:
    """An overlay PNG: the slice in grayscale with the heatmap in a colour map on top, stronger
    where the heat is higher. `image` is a `preprocess` output (or a 2-D grayscale array in
    [0, 1]); `heat` a `Predictor.heatmap` output."""
    from matplotlib import colormaps

    base = np.asarray(image, dtype=np.float32)
    if base.ndim == 3:
        base = base.mean(axis=-1)
    heat = np.clip(np.nan_to_num(np.asarray(heat, dtype=np.float32)), 0.0, 1.0)
    if heat.shape != base.shape:
        heat_image = Image.fromarray((heat * 255).astype(np.uint8)).resize(
            (base.shape[1], base.shape[0]), Image.Resampling.BILINEAR
        )
        heat = np.asarray(heat_image, dtype=np.float32) / 255.0
    colours = colormaps["jet"](heat)[..., :3]
    grey = np.repeat(np.clip(base, 0, 1)[..., np.newaxis], 3, axis=-1)
    weight = (alpha * heat)[..., np.newaxis]
    blended = (1 - weight) * grey + weight * colours
    buffer = io.BytesIO()
    Image.fromarray(np.rint(blended * 255).astype(np.uint8), mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def _setting(name: str, default: Any) -> Any:
    try:
        from django.conf import settings

        return getattr(settings, name, default)
    except Exception:  # outside Django
        return default


def get_predictor(weights_dir: Path | str | None = None) -> Predictor:
    """The Predictor for `weights_dir` (default settings.INFERENCE_WEIGHTS_DIR), loaded once per
    process; reloaded only if the weights file on disk changes."""
    if weights_dir is None:
        weights_dir = _setting("INFERENCE_WEIGHTS_DIR", Path(__file__).resolve().parent / "weights")
    directory = Path(weights_dir).resolve()
    weights = directory / WEIGHTS_FILE
    try:
        stat = weights.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"no {WEIGHTS_FILE} in {directory}") from None
    key = (str(directory), stat.st_mtime_ns, stat.st_size)
    predictor = _cache.get(key)
    if predictor is not None:
        return predictor
    with _cache_lock:
        predictor = _cache.get(key)
        if predictor is None:
            for stale in [k for k in _cache if k[0] == key[0]]:
                del _cache[stale]
            predictor = Predictor(directory)
            _cache[key] = predictor
    return predictor


def clear_predictor_cache() -> None:
    """Forget loaded models (tests; after replacing weights in place)."""
    with _cache_lock:
        _cache.clear()
