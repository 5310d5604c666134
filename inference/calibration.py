"""Calibrated probabilities: temperature scaling fitted on out-of-fold predictions, and the
expected calibration error (ECE) that says whether it helped. numpy only (the web process
imports this)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_EPS = 1e-7


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): T > 1 softens over-confident probabilities, T < 1 sharpens them."""
    logits = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), _EPS, 1.0)) / float(temperature)
    logits -= logits.max(axis=-1, keepdims=True)
    scaled = np.exp(logits)
    return scaled / scaled.sum(axis=-1, keepdims=True)


def negative_log_likelihood(probabilities: np.ndarray, labels: np.ndarray) -> float:
    picked = np.asarray(probabilities)[np.arange(len(labels)), np.asarray(labels, dtype=int)]
    return float(-np.log(np.clip(picked, _EPS, 1.0)).mean())


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of `labels` (golden-section
    search over log T in [1/20, 20]; the NLL is unimodal in T)."""
    if len(labels) == 0:
        return 1.0

    def loss(log_t: float) -> float:
        return negative_log_likelihood(apply_temperature(probabilities, float(np.exp(log_t))), labels)

    low, high = np.log(0.05), np.log(20.0)
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    loss_a, loss_b = loss(a), loss(b)
    for _ in range(80):
        if loss_a < loss_b:
            high, b, loss_b = b, a, loss_a
            a = high - ratio * (high - low)
            loss_a = loss(a)
        else:
            low, a, loss_a = a, b, loss_b
            b = low + ratio * (high - low)
            loss_b = loss(b)
    return float(np.exp((low + high) / 2.0))


@dataclass(frozen=True)
class Reliability:
    """Top-label reliability in equal-width confidence bins: what a reliability diagram plots."""

    bin_edges: list[float]
    confidence: list[float | None]  # mean top probability per bin (None: empty bin)
    accuracy: list[float | None]  # how often the top label was right in that bin
    counts: list[int]
    ece: float


def reliability(probabilities: np.ndarray, labels: np.ndarray, *, bins: int = 10) -> Reliability:
    """Expected calibration error of the top label: the count-weighted mean gap between
    confidence and accuracy over `bins` equal-width bins."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=int)
    top = probabilities.max(axis=1) if len(probabilities) else np.zeros(0)
    correct = (probabilities.argmax(axis=1) == labels) if len(probabilities) else np.zeros(0, bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(top, edges[1:-1], right=True), 0, bins - 1)
    confidence: list[float | None] = []
    accuracy: list[float | None] = []
    counts: list[int] = []
    gap = 0.0
    for index in range(bins):
        members = which == index
        count = int(members.sum())
        counts.append(count)
        if count == 0:
            confidence.append(None)
            accuracy.append(None)
            continue
        mean_confidence, mean_accuracy = float(top[members].mean()), float(correct[members].mean())
        confidence.append(mean_confidence)
        accuracy.append(mean_accuracy)
        gap += count * abs(mean_confidence - mean_accuracy)
    ece = gap / len(top) if len(top) else 0.0
    return Reliability(
        bin_edges=[float(e) for e in edges], confidence=confidence, accuracy=accuracy, counts=counts, ece=ece
    )
