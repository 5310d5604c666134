"""Fitting the study-level rule (`inference.study.StudyRule`) on out-of-fold predictions.

The dataset has slices, not studies: a study is approximated as a run of consecutive slices of
one class within one fold, as long as that class's typical patient (the dataset's published
patient counts). The rule is fitted on these studies and reported per fold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..preprocessing import CLASS_NAMES
from ..study import MALIGNANT, StudyRule, study_result

# Slices per patient in the full IQ-OTH/NCCD dataset (images / patients): 416/55, 120/15, 561/40.
SLICES_PER_PATIENT: dict[str, int] = {"normal": 8, "benign": 8, "malignant": 14}
_MAL = CLASS_NAMES.index(MALIGNANT)


def pseudo_studies(labels: np.ndarray, sequences: np.ndarray, folds: np.ndarray) -> list[np.ndarray]:
    """Index arrays, one per study: consecutive slices of one class in one fold."""
    studies: list[np.ndarray] = []
    for fold in np.unique(folds):
        for class_index, name in enumerate(CLASS_NAMES):
            members = np.flatnonzero((folds == fold) & (labels == class_index))
            members = members[np.argsort(sequences[members], kind="stable")]
            count = max(1, round(len(members) / SLICES_PER_PATIENT[name]))
            studies.extend(chunk for chunk in np.array_split(members, count) if len(chunk))
    return studies


def pairwise_auc(probabilities: np.ndarray, labels: np.ndarray, positive: str, negative: str) -> float | None:
    """Ranking AUC of `positive` against `negative` slices, by p(positive) / (p(positive) + p(negative))."""
    from sklearn.metrics import roc_auc_score

    pos, neg = CLASS_NAMES.index(positive), CLASS_NAMES.index(negative)
    keep = (labels == pos) | (labels == neg)
    if len(np.unique(labels[keep])) < 2:
        return None
    score = probabilities[keep, pos] / np.clip(
        probabilities[keep, pos] + probabilities[keep, neg], 1e-9, None
    )
    return float(roc_auc_score(labels[keep] == pos, score))


@dataclass(frozen=True)
class FittedRule:
    rule: StudyRule
    figures: dict[str, Any]


def fit_study_rule(
    probabilities: np.ndarray,
    labels: np.ndarray,
    studies: list[np.ndarray],
    folds: np.ndarray,
    *,
    target_sensitivity: float = 0.95,
) -> FittedRule:
    """Fit suspicion (a logistic map of the top slice's calibrated p(malignant)) and the malignant
    threshold (the highest that keeps study-level sensitivity at or above the target)."""
    from sklearn.linear_model import LogisticRegression

    top = np.array([probabilities[s, _MAL].max() for s in studies])
    truth = np.array([labels[s[0]] == _MAL for s in studies])
    logit = np.log(np.clip(top, 1e-6, 1 - 1e-6) / np.clip(1 - top, 1e-6, 1))
    model = LogisticRegression(C=1.0).fit(logit[:, None], truth)
    slope, intercept = float(model.coef_[0, 0]), float(model.intercept_[0])
    draft = StudyRule(suspicion_slope=slope, suspicion_intercept=intercept)
    suspicion = np.array([draft.suspicion(float(t)) for t in top])
    threshold = _threshold_for_sensitivity(suspicion, truth, target_sensitivity)
    rule = StudyRule(
        malignant_threshold=threshold,
        suspicion_slope=slope,
        suspicion_intercept=intercept,
        benign_normal_auc=pairwise_auc(probabilities, labels, "benign", "normal"),
        target_sensitivity=target_sensitivity,
    )
    return FittedRule(rule=rule, figures=study_figures(probabilities, labels, studies, folds, rule))


def _threshold_for_sensitivity(suspicion: np.ndarray, truth: np.ndarray, target: float) -> float:
    """The highest threshold at which at least `target` of the malignant studies reach it."""
    positives = np.sort(suspicion[truth])[::-1]
    if len(positives) == 0:
        return 0.5
    needed = max(1, math.ceil(target * len(positives)))
    return float(positives[needed - 1])


def study_figures(
    probabilities: np.ndarray,
    labels: np.ndarray,
    studies: list[np.ndarray],
    folds: np.ndarray,
    rule: StudyRule,
) -> dict[str, Any]:
    """Study-level malignant sensitivity and specificity, pooled and per fold (mean ± sd)."""
    rows = []
    for members in studies:
        slices = [dict(zip(CLASS_NAMES, map(float, probabilities[i]), strict=True)) for i in members]
        result = study_result(slices, rule)
        rows.append((int(folds[members[0]]), labels[members[0]] == _MAL, result.label == MALIGNANT))
    per_fold = []
    for fold in sorted({row[0] for row in rows}):
        mine = [row for row in rows if row[0] == fold]
        per_fold.append(_sens_spec(mine))
    pooled = _sens_spec(rows)

    def summary(key: str) -> dict[str, float | None]:
        values = [value for f in per_fold if (value := f[key]) is not None]
        return {
            "pooled": pooled[key],
            "mean": float(np.mean(values)) if values else None,
            "sd": float(np.std(values)) if values else None,
        }

    return {
        "studies": len(rows),
        "malignant_studies": int(sum(row[1] for row in rows)),
        "sensitivity": summary("sensitivity"),
        "specificity": summary("specificity"),
        "approximation": (
            "runs of consecutive slices of one class within one fold, as long as that class's patients "
            "in the full dataset (normal 8, benign 8, malignant 14 slices)"
        ),
    }


def _sens_spec(rows: list[tuple[int, bool, bool]]) -> dict[str, float | None]:
    positives = [flagged for _, malignant, flagged in rows if malignant]
    negatives = [flagged for _, malignant, flagged in rows if not malignant]
    return {
        "sensitivity": float(np.mean(positives)) if positives else None,
        "specificity": float(1 - np.mean(negatives)) if negatives else None,
    }
