"""The study-level result: from the calibrated probabilities of a study's assessable slices to
what a clinician reads first. numpy only (the web process imports this).

The rule (fitted on out-of-fold predictions by `inference.training.study_rule`, stored in the
model card):
- a slice is *suspicious* when its calibrated probability of malignancy reaches
  `slice_threshold`;
- the study's *suspicion* is its calibrated probability of malignancy: a logistic map of its
  most suspicious slice's probability, fitted on cross-validation studies (one malignant slice
  among normal ones is what matters, so the mean would hide it);
- the study is labelled malignant when suspicion reaches `malignant_threshold`, chosen so that
  malignant sensitivity stays at or above the target on cross-validation;
- otherwise it is benign or normal by the mean of its slices, unless the model cannot tell those
  two apart reliably (pairwise AUC below `separable_auc` on cross-validation): then it gives no
  label and says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .preprocessing import CLASS_NAMES

MALIGNANT = "malignant"
RULE_SUMMARY = (
    "The study's suspicion is its calibrated probability of malignancy, led by its most suspicious "
    "slice; it is labelled malignant above a threshold chosen to keep malignant sensitivity at or "
    "above 95% in cross-validation. Slices that are not assessable never count."
)


@dataclass(frozen=True)
class StudyRule:
    slice_threshold: float = 0.5
    malignant_threshold: float = 0.5
    suspicion_slope: float = 1.0  # suspicion = sigmoid(slope * logit(max p) + intercept)
    suspicion_intercept: float = 0.0
    benign_normal_auc: float | None = None  # cross-validated; None: not measured
    separable_auc: float = 0.8
    target_sensitivity: float = 0.95

    @classmethod
    def from_card(cls, card: Mapping[str, Any]) -> StudyRule:
        values = dict(card.get("study_rule") or {})
        known = {name for name in cls.__dataclass_fields__}
        return cls(**{key: value for key, value in values.items() if key in known})

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @property
    def benign_normal_separable(self) -> bool:
        return self.benign_normal_auc is not None and self.benign_normal_auc >= self.separable_auc

    def suspicion(self, top_malignant: float) -> float:
        clipped = min(max(top_malignant, 1e-6), 1 - 1e-6)
        z = self.suspicion_slope * math.log(clipped / (1 - clipped)) + self.suspicion_intercept
        return 1.0 / (1.0 + math.exp(-z))


@dataclass(frozen=True)
class StudyResult:
    suspicion: float | None  # None: no slice could be assessed
    label: str  # a class name, or "" where the rule gives none
    suspicious_slices: int
    ranking: list[int] = field(default_factory=list)  # slice indices, most suspicious first
    probabilities: dict[str, float] | None = None  # mean over assessable slices
    finding: str = ""


def study_result(slices: Sequence[Mapping[str, float] | None], rule: StudyRule) -> StudyResult:
    """`slices`: each slice's calibrated probabilities by class name, or None where it was not
    assessable (such slices never count)."""
    assessable = [(index, p) for index, p in enumerate(slices) if p is not None]
    if not assessable:
        return StudyResult(
            suspicion=None, label="", suspicious_slices=0, finding="No slice of this study could be assessed."
        )
    ranking = [index for index, _ in sorted(assessable, key=lambda item: -item[1][MALIGNANT])]
    top = max(p[MALIGNANT] for _, p in assessable)
    suspicion = rule.suspicion(top)
    suspicious = sum(1 for _, p in assessable if p[MALIGNANT] >= rule.slice_threshold)
    mean = {name: sum(p[name] for _, p in assessable) / len(assessable) for name in CLASS_NAMES}
    if suspicion >= rule.malignant_threshold:
        label, finding = MALIGNANT, f"Suspicious for malignancy ({suspicious} suspicious slice(s))."
    elif rule.benign_normal_separable:
        label = "benign" if mean["benign"] >= mean["normal"] else "normal"
        finding = f"No sign of malignancy; most likely {label}."
    else:
        label = ""
        finding = (
            "No sign of malignancy. This model cannot reliably tell benign from normal "
            "(see its cross-validated figures), so it does not say which."
        )
    return StudyResult(
        suspicion=suspicion,
        label=label,
        suspicious_slices=suspicious,
        ranking=ranking,
        probabilities=mean,
        finding=finding,
    )
