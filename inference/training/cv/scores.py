"""Scores on numpy arrays: balanced class weights, the class-weighted log loss that picks E*,
and balanced accuracy."""

from __future__ import annotations

import numpy as np

from ...preprocessing import CLASS_NAMES
from ..metrics import class_weights_for

LOG_EPSILON = 1e-7  # Keras clips probabilities at this before the log


def class_weight_array(labels: np.ndarray) -> np.ndarray:
    """Balanced class weights n / (k * n_c) (`metrics.class_weights_for`) as an array."""
    weights = class_weights_for(labels)
    return np.array([weights[c] for c in range(len(CLASS_NAMES))], dtype=np.float64)


def weighted_log_loss(probs: np.ndarray, labels: np.ndarray, class_weight: np.ndarray) -> float:
    """Class-weighted categorical cross-entropy: sum(w_i * -log p_i[y_i]) / sum(w_i)."""
    p = np.clip(probs[np.arange(len(labels)), labels].astype(np.float64), LOG_EPSILON, 1.0)
    w = class_weight[labels]
    return float((w * -np.log(p)).sum() / max(float(w.sum()), 1e-12))


def balanced_accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean recall over the classes present."""
    predicted = probs.argmax(axis=1)
    recalls = [float((predicted[labels == c] == c).mean()) for c in np.unique(labels)]
    return float(np.mean(recalls)) if recalls else float("nan")
