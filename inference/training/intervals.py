"""95% intervals for the card's pooled figures: a bootstrap over studies, from the saved
out-of-fold predictions.

The dataset names no patients; its slices are numbered consecutively per patient, and the card's
studies (`study_rule.pseudo_studies`: runs of consecutive slices of one class within one fold, as
long as that class's patients) stand for them. Slices of one patient are near-identical, so
resampling slices would understate the spread: whole studies are resampled, with replacement,
within each class (every replicate keeps each class's count of studies, so each recall is
defined). The fitted temperature and study rule are held fixed: the intervals are the sampling
spread of these figures for this model, not of the fitting, which used the same predictions (a
small optimistic bias they do not show). The seed is fixed: the same predictions give the same
intervals.

Not-assessable rates have no per-slice record in the card: those get a Wilson score interval
from the rate and its count.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..calibration import reliability
from ..preprocessing import CLASS_NAMES
from ..study import MALIGNANT, StudyRule, study_result
from .study_rule import pseudo_studies

SEED = 20250125
REPLICATES = 1000
LEVEL = 0.95

Figure = Callable[[np.ndarray], float | None]


def _recall(labels: np.ndarray, predicted: np.ndarray, c: int) -> float | None:
    mine = labels == c
    return float((predicted[mine] == c).mean()) if mine.any() else None


def slice_figures(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, Figure]:
    """Each pooled slice figure of the card as a function of the slices (an index array) it is
    measured on."""
    predicted = probabilities.argmax(axis=1)
    mal = CLASS_NAMES.index(MALIGNANT)
    benign, normal = CLASS_NAMES.index("benign"), CLASS_NAMES.index("normal")
    # As `study_rule.pairwise_auc` scores them: p(benign) / (p(benign) + p(normal)).
    benign_share = probabilities[:, benign] / np.clip(
        probabilities[:, benign] + probabilities[:, normal], 1e-9, None
    )

    def balanced_accuracy(rows: np.ndarray) -> float | None:
        recalls = [_recall(labels[rows], predicted[rows], c) for c in range(len(CLASS_NAMES))]
        present = [r for r in recalls if r is not None]
        return float(np.mean(present)) if present else None

    def recall(c: int) -> Figure:
        return lambda rows: _recall(labels[rows], predicted[rows], c)

    def benign_vs_normal(rows: np.ndarray) -> float | None:
        rows = rows[(labels[rows] == benign) | (labels[rows] == normal)]
        return _auc(labels[rows] == benign, benign_share[rows])

    return {
        "balanced_accuracy": balanced_accuracy,
        **{f"recall_{name}": recall(c) for c, name in enumerate(CLASS_NAMES)},
        "malignant_vs_rest_auc": lambda rows: _auc(labels[rows] == mal, probabilities[rows, mal]),
        "benign_vs_normal_auc": benign_vs_normal,
    }


def _auc(truth: np.ndarray, score: np.ndarray) -> float | None:
    """Ranking AUC, ties counted half (sklearn's roc_auc_score), fast enough for a thousand
    replicates: for each positive, the negatives scored below it."""
    positives, negatives = score[truth], np.sort(score[~truth])
    if not len(positives) or not len(negatives):
        return None
    below = np.searchsorted(negatives, positives, side="left")
    tied = np.searchsorted(negatives, positives, side="right") - below
    return float((below.sum() + 0.5 * tied.sum()) / (len(positives) * len(negatives)))


def card_intervals(
    cv: dict[str, np.ndarray],
    *,
    sequences: np.ndarray,
    temperature: float,
    rule: StudyRule,
    assessability: dict[str, Any] | None = None,
    replicates: int = REPLICATES,
    seed: int = SEED,
) -> dict[str, Any]:
    """Point estimate, 95% interval and sample size of every pooled figure of the card."""
    from ..calibration import apply_temperature

    labels = cv["labels"].astype(np.int64)
    folds = cv["fold_of"].astype(np.int64)
    raw = cv["oof_probs"].astype(np.float64)
    calibrated = apply_temperature(raw, temperature)
    studies = pseudo_studies(labels, np.asarray(sequences), folds)
    study_class = np.array([labels[s[0]] for s in studies])
    mal = CLASS_NAMES.index(MALIGNANT)
    # Each study's result under the card's rule, once: a replicate only counts them.
    flagged = np.array(
        [
            study_result(
                [dict(zip(CLASS_NAMES, map(float, calibrated[i]), strict=True)) for i in members], rule
            ).label
            == MALIGNANT
            for members in studies
        ]
    )

    slice_level = slice_figures(calibrated, labels)
    slice_level["ece_before"] = lambda rows: reliability(raw[rows], labels[rows]).ece
    slice_level["ece_after"] = lambda rows: reliability(calibrated[rows], labels[rows]).ece
    study_level: dict[str, Callable[[np.ndarray], float | None]] = {
        "study_sensitivity": lambda picked: _share(flagged[picked][study_class[picked] == mal]),
        "study_specificity": lambda picked: _share(~flagged[picked][study_class[picked] != mal]),
    }
    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(study_class == c) for c in range(len(CLASS_NAMES))]
    samples: dict[str, list[float]] = {name: [] for name in [*slice_level, *study_level]}
    for _ in range(replicates):
        picked = np.concatenate([rng.choice(group, size=len(group)) for group in by_class if len(group)])
        rows = np.concatenate([studies[i] for i in picked])
        for name, figure in slice_level.items():
            _keep(samples[name], figure(rows))
        for name, figure in study_level.items():
            _keep(samples[name], figure(picked))
    everything = np.arange(len(labels))
    all_studies = np.arange(len(studies))
    n_slices = len(labels)
    result: dict[str, Any] = {
        "method": (
            f"bootstrap over studies ({replicates} replicates, resampled within each class, seed {seed}); "
            "temperature and study rule held fixed"
        ),
        "level": LEVEL,
        "figures": {},
    }
    # The slices or studies each figure is measured on (a recall: that class's).
    counts = np.bincount(labels, minlength=len(CLASS_NAMES))
    n = {f"recall_{name}": int(counts[c]) for c, name in enumerate(CLASS_NAMES)}
    n["benign_vs_normal_auc"] = int(counts[CLASS_NAMES.index("benign")] + counts[CLASS_NAMES.index("normal")])
    n["study_sensitivity"] = int((study_class == mal).sum())
    n["study_specificity"] = int((study_class != mal).sum())
    for name, figure in slice_level.items():
        result["figures"][name] = _interval(
            figure(everything), samples[name], n.get(name, n_slices), "slices"
        )
    for name, figure in study_level.items():
        result["figures"][name] = _interval(figure(all_studies), samples[name], n[name], "studies")
    if assessability:
        result["figures"]["false_flag_rate"] = _wilson(assessability["false_flag_rate"], n_slices, "slices")
        caught = len(assessability.get("non_ct_images") or [])
        if caught:
            result["figures"]["catch_rate"] = _wilson(assessability["catch_rate"], caught, "images")
    return result


def _share(values: np.ndarray) -> float | None:
    return float(values.mean()) if len(values) else None


def _keep(into: list[float], value: float | None) -> None:
    if value is not None and not math.isnan(value):
        into.append(value)


def _interval(value: float | None, samples: list[float], n: int, unit: str) -> dict[str, Any]:
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail]) if samples else (None, None)
    return {
        "value": None if value is None else round(float(value), 4),
        "low": None if low is None else round(float(low), 4),
        "high": None if high is None else round(float(high), 4),
        "n": n,
        "unit": unit,
    }


def _wilson(rate: float, n: int, unit: str) -> dict[str, Any]:
    """Wilson score interval for a proportion `rate` of `n`."""
    z = 1.959963984540054
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return {
        "value": round(float(rate), 4),
        "low": round(max(0.0, centre - half), 4),
        "high": round(min(1.0, centre + half), 4),
        "n": n,
        "unit": unit,
        "method": "Wilson score",
    }
