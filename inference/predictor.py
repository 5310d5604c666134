"""Serving: load verified weights once per process, classify batches into calibrated
probabilities, say which images are not assessable, explain with Grad-CAM.

TensorFlow is imported only when a Predictor is built, never at import time: the web process
imports this module (for `heatmap_png`) without paying for TensorFlow.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .artifacts import files_state, read_card, verified_hashes, version_sha256
from .assessability import Limits, slice_features
from .calibration import apply_temperature
from .preprocessing import CLASS_NAMES, IMAGE_SIZE, Inspection
from .study import StudyRule

_cache: dict[tuple[Any, ...], Predictor] = {}
_cache_lock = threading.Lock()
# Heat below this is left fully transparent in an overlay: no tint over tissue the model ignored.
_HEAT_FLOOR = 0.05


class Predictor:
    """A loaded model (one network or an ensemble averaging its members' probabilities). Build it
    with `get_predictor`, which caches one per weights folder."""

    def __init__(
        self,
        weights_dir: Path | str,
        *,
        expected_hashes: Mapping[str, str] | None = None,
        batch_size: int | None = None,
        runtime: str | None = None,
    ) -> None:
        from .runtime import configure_tensorflow

        self.weights_dir = Path(weights_dir).resolve()
        self.card: dict[str, Any] = read_card(self.weights_dir)
        self.hashes = verified_hashes(self.weights_dir, self.card, expected_hashes)
        self.sha256: str = version_sha256(self.hashes)
        self.name: str = str(self.card.get("name") or f"model-{self.sha256[:12]}")
        self.image_size = int(self.card.get("image_size") or IMAGE_SIZE)
        self.temperature = float((self.card.get("calibration") or {}).get("temperature") or 1.0)
        self.rule = StudyRule.from_card(self.card)
        limits = (self.card.get("assessability") or {}).get("limits")
        self.limits: Limits | None = Limits.from_dict(limits) if limits else None
        if batch_size is None:
            batch_size = _setting("INFERENCE_BATCH_SIZE", 16)
        self.batch_size = max(1, int(batch_size))

        configure_tensorflow()
        import keras
        import tensorflow as tf

        self.members = [
            keras.models.load_model(self.weights_dir / name, compile=False) for name in self.hashes
        ]
        spec = tf.TensorSpec([None, self.image_size, self.image_size, 3], tf.float32)
        members = self.members
        # One compiled graph for every batch size and all members: no per-call retracing.
        self._forward = tf.function(
            lambda x: tf.add_n([member(x, training=False) for member in members]) / len(members),
            input_signature=[spec],
        )
        self._gradcam, self.conv_layer = _gradcam_function(members[0], spec, self.image_size)
        self.runtime = str(runtime or _setting("INFERENCE_RUNTIME", "tflite"))
        self._lite = None
        if self.runtime == "tflite":
            from .lite import LiteEnsemble

            self._lite = LiteEnsemble(members, threads=int(_setting("TF_INTRA_OP_THREADS", 2)) or None)

    def __repr__(self) -> str:
        return f"<Predictor {self.name} {self.sha256[:12]}>"

    def _as_batch(self, images: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        array = np.asarray(images, dtype=np.float32)
        if array.ndim == 3:
            array = array[np.newaxis]
        size = self.image_size
        if array.ndim != 4 or array.shape[1:] != (size, size, 3):
            raise ValueError(
                f"expected images of shape ({size}, {size}, 3) from preprocess(size={size}), got "
                f"{array.shape[1:] if array.ndim == 4 else array.shape}"
            )
        return array

    def predict_uncalibrated(self, images: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """The members' mean probabilities (n, 3) before calibration, columns in CLASS_NAMES order."""
        if len(images) == 0:
            return np.zeros((0, len(CLASS_NAMES)), dtype=np.float64)
        batch = self._as_batch(images)
        outputs = [
            self._forward_batch(batch[start : start + self.batch_size])
            for start in range(0, len(batch), self.batch_size)
        ]
        probabilities = np.concatenate(outputs, axis=0).astype(np.float64)
        return probabilities / probabilities.sum(axis=1, keepdims=True)

    def _forward_batch(self, batch: np.ndarray) -> np.ndarray:
        """One batch through the members: TFLite where it serves (INFERENCE_RUNTIME), else Keras."""
        if self._lite is not None:
            return self._lite.forward(batch)
        return np.asarray(self._forward(batch).numpy())

    def predict(self, images: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """Calibrated probabilities (n, 3), columns in CLASS_NAMES order, rows summing to 1; the
        images are `preprocess(size=self.image_size)` outputs, run in batches of
        settings.INFERENCE_BATCH_SIZE."""
        raw = self.predict_uncalibrated(images)
        return apply_temperature(raw, self.temperature) if len(raw) else raw

    def not_assessable_reason(self, inspection: Inspection) -> str | None:
        """Why this image is unlike the CT slices the model knows, or None where it is like them."""
        if self.limits is None:
            return None
        return self.limits.reason(slice_features(inspection.image, colour=inspection.colour))

    def heatmap(self, image: np.ndarray, *, within_lungs: bool = True) -> np.ndarray:
        """Grad-CAM of the first member for its predicted class on the last convolution: float32
        (size, size) in [0, 1], aligned with the (padded, resized) model input. Only inside the
        lung fields (`inference.lung_fields`) unless `within_lungs` is False: heat on the chest
        wall, the axillae or the table is no finding, and showing it invites trust in it."""
        batch = self._as_batch(image)
        if len(batch) != 1:
            raise ValueError("heatmap() explains one image at a time")
        heat = self._gradcam(batch).numpy().astype(np.float32)
        return heat_within_lungs(heat, batch[0]) if within_lungs else heat


def heat_within_lungs(heat: np.ndarray, image: np.ndarray) -> np.ndarray:
    """`heat` zeroed outside the lung fields of `image` (a `preprocess` output). Not rescaled: a
    faint heat inside stays faint. Where no plausible lung field is found nothing is shown."""
    from .lung_fields import lung_fields_gray

    fields = lung_fields_gray(np.rint(np.asarray(image)[..., 0] * 255.0))
    if not fields.plausible:
        return np.zeros_like(heat)
    return np.where(fields.mask, heat, np.float32(0.0)).astype(np.float32)


def _gradcam_function(model: Any, spec: Any, size: int) -> tuple[Any, str]:
    """A compiled Grad-CAM for `model`: the last convolution's feature maps weighted by the
    gradient of the top class score *before* softmax (gradients of a saturated probability
    vanish), resized to the input."""
    import keras
    import tensorflow as tf

    from .network import last_conv_layer_name

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
        cam = tf.image.resize(cam, (size, size), method="bilinear")[0, :, :, 0]
        peak = tf.reduce_max(cam)
        return tf.where(peak > 0, cam / tf.maximum(peak, 1e-12), tf.zeros_like(cam))

    return tf.function(gradcam, input_signature=[spec]), conv_name


def heatmap_png(heat: np.ndarray, *, size: tuple[int, int]) -> bytes:
    """The heatmap as an RGBA overlay PNG for the viewer to lay over the slice: `size` (width,
    height) is the original slice's, and the overlay has its exact geometry (the model input's
    padding to a square and resize are undone). Colours from a colour map; alpha rises with the
    heat, so the slice shows through and is untouched (transparent) where the heat is ~0.

    `heat` is a `Predictor.heatmap` output: (n, n) in [0, 1], aligned with the padded, resized
    input (`preprocessing.preprocess`)."""
    from matplotlib import colormaps

    width, height = size
    if width < 1 or height < 1:
        raise ValueError(f"a slice has at least one pixel each way, not {width}x{height}")
    heat = np.clip(np.nan_to_num(np.asarray(heat, dtype=np.float32)), 0.0, 1.0)
    if heat.ndim != 2:
        raise ValueError(f"the heat is a 2-D map, not shape {heat.shape}")
    # Undo preprocess: back to the padded square's size, then crop its centred padding away.
    side = max(width, height)
    square = Image.fromarray(heat).resize((side, side), Image.Resampling.BILINEAR)
    left, top = (side - width) // 2, (side - height) // 2
    heat = np.clip(np.asarray(square.crop((left, top, left + width, top + height))), 0.0, 1.0)
    rgba = colormaps["jet"](heat)
    # Alpha rises from 0 at the floor to opaque at the peak; the viewer's opacity slider scales it.
    rgba[..., 3] = np.clip((heat - _HEAT_FLOOR) / (1.0 - _HEAT_FLOOR), 0.0, 1.0)
    buffer = io.BytesIO()
    Image.fromarray(np.rint(rgba * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _setting(name: str, default: Any) -> Any:
    try:
        from django.conf import settings

        return getattr(settings, name, default)
    except Exception:  # outside Django
        return default


def get_predictor(
    weights_dir: Path | str | None = None, *, expected_hashes: Mapping[str, str] | None = None
) -> Predictor:
    """The Predictor for `weights_dir` (default settings.INFERENCE_WEIGHTS_DIR), loaded once per
    process and reloaded when its card or any weights file changes on disk. `expected_hashes`
    ({file: SHA-256}, from the model version) are checked whenever the weights are loaded."""
    if weights_dir is None:
        weights_dir = _setting("INFERENCE_WEIGHTS_DIR", Path(__file__).resolve().parent / "weights")
    directory = Path(weights_dir).resolve()
    key = (str(directory), files_state(directory), tuple(sorted((expected_hashes or {}).items())))
    predictor = _cache.get(key)
    if predictor is not None:
        return predictor
    with _cache_lock:
        predictor = _cache.get(key)
        if predictor is None:
            for stale in [k for k in _cache if k[0] == key[0]]:
                del _cache[stale]
            predictor = Predictor(directory, expected_hashes=expected_hashes)
            _cache[key] = predictor
    return predictor


def clear_predictor_cache() -> None:
    """Forget loaded models (tests; after replacing weights in place)."""
    with _cache_lock:
        _cache.clear()
