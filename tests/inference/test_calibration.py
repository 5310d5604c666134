"""Temperature scaling on an over-confident model: it must lower the calibration error."""

import numpy as np
import pytest

from inference.calibration import apply_temperature, fit_temperature, negative_log_likelihood, reliability


def over_confident(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A model right about 70% of the time that says 95-99%."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    predicted = np.where(rng.random(n) < 0.7, labels, (labels + rng.integers(1, 3, n)) % 3)
    probabilities = np.full((n, 3), 0.01)
    probabilities[np.arange(n), predicted] = rng.uniform(0.95, 0.99, n)
    return probabilities / probabilities.sum(axis=1, keepdims=True), labels


def test_temperature_scaling_lowers_the_calibration_error_of_an_over_confident_model():
    probabilities, labels = over_confident()
    temperature = fit_temperature(probabilities, labels)
    calibrated = apply_temperature(probabilities, temperature)
    before, after = reliability(probabilities, labels).ece, reliability(calibrated, labels).ece
    assert temperature > 1.5  # it softens
    assert before > 0.2 and after < 0.05
    assert negative_log_likelihood(calibrated, labels) < negative_log_likelihood(probabilities, labels)
    assert (calibrated.argmax(axis=1) == probabilities.argmax(axis=1)).all()  # ranking kept


def test_a_calibrated_model_keeps_a_temperature_near_one():
    rng = np.random.default_rng(1)
    probabilities = rng.dirichlet([1, 1, 1], 5000)
    labels = np.array([rng.choice(3, p=p) for p in probabilities])
    assert fit_temperature(probabilities, labels) == pytest.approx(1.0, abs=0.1)


def test_reliability_bins_count_every_slice_and_ece_is_the_weighted_gap():
    probabilities = np.array([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.2, 0.6, 0.2]])
    labels = np.array([0, 1, 1])
    curve = reliability(probabilities, labels, bins=10)
    assert sum(curve.counts) == 3
    # bin 0.8-0.9: confidence 0.9, accuracy 0.5; bin 0.5-0.6: confidence 0.6, accuracy 1.
    assert curve.ece == pytest.approx((2 * 0.4 + 1 * 0.4) / 3)
