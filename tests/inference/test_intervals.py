"""95% intervals by bootstrap over studies: they hold the point estimate, are reproducible from
their seed, and the shipped card's are those of its own figures."""

from __future__ import annotations

import json

import numpy as np
import pytest

from inference.preprocessing import CLASS_NAMES
from inference.study import StudyRule
from inference.training.intervals import _auc, card_intervals

from .conftest import SHIPPED_WEIGHTS


def _predictions(seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Out-of-fold predictions of 3 folds, 'patients' of 8 consecutive slices, fairly good."""
    rng = np.random.default_rng(seed)
    labels, folds, sequences = [], [], []
    for c in range(len(CLASS_NAMES)):
        for fold in range(3):
            for slice_number in range(40):
                labels.append(c)
                folds.append(fold)
                sequences.append(fold * 40 + slice_number + 1)
    labels_a = np.array(labels)
    logits = rng.normal(0, 1, (len(labels_a), 3))
    logits[np.arange(len(labels_a)), labels_a] += 1.5
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    cv = {"labels": labels_a, "fold_of": np.array(folds), "oof_probs": probs.astype(np.float32)}
    return cv, np.array(sequences)


def _intervals(seed: int = 1) -> dict:
    cv, sequences = _predictions()
    rule = StudyRule(malignant_threshold=0.5, suspicion_slope=1.0, suspicion_intercept=0.0)
    assessability = {"false_flag_rate": 0.0, "non_ct_images": {"a": "x", "b": None}, "catch_rate": 0.5}
    return card_intervals(
        cv,
        sequences=sequences,
        temperature=1.3,
        rule=rule,
        assessability=assessability,
        replicates=200,
        seed=seed,
    )


def test_every_interval_holds_its_point_estimate_and_says_its_sample_size() -> None:
    figures = _intervals()["figures"]
    assert {"balanced_accuracy", "study_sensitivity", "study_specificity", "ece_after"} <= set(figures)
    for name, entry in figures.items():
        assert entry["low"] <= entry["value"] <= entry["high"], name
        assert entry["n"] > 0, name
    assert figures["balanced_accuracy"]["high"] > figures["balanced_accuracy"]["low"]
    assert figures["balanced_accuracy"]["n"] == 360 and figures["recall_benign"]["n"] == 120
    assert figures["study_sensitivity"]["n"] == 9 and figures["study_specificity"]["n"] == 30
    assert figures["false_flag_rate"]["high"] > 0, "none of n flagged is not 'never' (Wilson)"


def test_intervals_are_reproducible_from_their_seed() -> None:
    assert _intervals(seed=1) == _intervals(seed=1)
    again, other = _intervals(seed=1)["figures"], _intervals(seed=2)["figures"]
    assert any(again[name]["low"] != other[name]["low"] for name in again)


def test_the_fast_auc_is_sklearns() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(5)
    truth = rng.random(300) < 0.3
    score = np.round(rng.random(300) + truth * 0.3, 2)  # rounded: ties count half
    assert _auc(truth, score) == pytest.approx(roc_auc_score(truth, score), abs=1e-12)
    assert _auc(np.zeros(5, bool), score[:5]) is None


def test_the_shipped_card_gives_an_interval_for_each_of_its_figures() -> None:
    from inference.training.cv_card import render_cv_card_markdown

    card = json.loads((SHIPPED_WEIGHTS / "card.json").read_text())
    figures = card["intervals"]["figures"]
    slices, studies, calibration = card["slice_metrics"], card["study_metrics"], card["calibration"]
    pooled = {
        "balanced_accuracy": slices["balanced_accuracy"]["pooled"],
        **{f"recall_{name}": slices["recall"][name]["pooled"] for name in CLASS_NAMES},
        "malignant_vs_rest_auc": slices["pairwise_auc"]["malignant_vs_rest"]["pooled"],
        "benign_vs_normal_auc": slices["pairwise_auc"]["benign_vs_normal"]["pooled"],
        "study_sensitivity": studies["sensitivity"]["pooled"],
        "study_specificity": studies["specificity"]["pooled"],
        "ece_before": calibration["ece_before"],
        "ece_after": calibration["ece_after"],
        "false_flag_rate": card["assessability"]["false_flag_rate"],
        "catch_rate": card["assessability"]["catch_rate"],
    }
    assert set(figures) == set(pooled)
    for name, value in pooled.items():
        assert figures[name]["value"] == pytest.approx(value, abs=6e-5), name
        assert figures[name]["low"] <= figures[name]["value"] <= figures[name]["high"], name
    assert figures["study_sensitivity"]["n"] == studies["malignant_studies"]
    assert figures["study_specificity"]["n"] == studies["studies"] - studies["malignant_studies"]
    assert figures["balanced_accuracy"]["n"] == card["dataset"]["slices"]
    # The Markdown card is the JSON card rendered: the intervals are on it.
    text = (SHIPPED_WEIGHTS / "MODEL_CARD.md").read_text()
    assert text == render_cv_card_markdown(card) and "## 95% intervals" in text
