"""TensorFlow process setup: thread counts from settings, set once before TensorFlow runs anything."""

from __future__ import annotations

import logging
import os
import threading

logger = logging.getLogger(__name__)
_lock = threading.Lock()
_configured = False


def _thread_settings() -> tuple[int, int]:
    try:
        from django.conf import settings

        return int(settings.TF_INTRA_OP_THREADS), int(settings.TF_INTER_OP_THREADS)
    except Exception:  # used outside Django (a plain script): let TensorFlow decide
        return 0, 0


def configure_tensorflow() -> None:
    """Quiet TensorFlow's C++ logging and set its thread pools from settings (0 = TensorFlow's
    default). Idempotent; thread counts can only be set before TensorFlow's first op."""
    global _configured
    with _lock:
        if _configured:
            return
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        intra, inter = _thread_settings()
        try:
            tf.config.threading.set_intra_op_parallelism_threads(intra)
            tf.config.threading.set_inter_op_parallelism_threads(inter)
        except RuntimeError:
            logger.warning("TensorFlow already initialised; thread counts left as they are")
        _configured = True
