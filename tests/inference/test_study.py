"""The study rule on constructed studies."""

import pytest

from inference.study import StudyRule, study_result

RULE = StudyRule(
    slice_threshold=0.5,
    malignant_threshold=0.5,
    suspicion_slope=1.0,
    suspicion_intercept=0.0,
    benign_normal_auc=0.6,
    separable_auc=0.8,
)


def normal(p: float = 0.9) -> dict[str, float]:
    return {"normal": p, "benign": (1 - p) * 0.7, "malignant": (1 - p) * 0.3}


def malignant(p: float) -> dict[str, float]:
    return {"normal": (1 - p) / 2, "benign": (1 - p) / 2, "malignant": p}


def test_one_strongly_malignant_slice_among_normal_ones_flags_the_study():
    slices = [normal() for _ in range(19)] + [malignant(0.92)]
    result = study_result(slices, RULE)
    mean_malignant = sum(s["malignant"] for s in slices) / len(slices)
    assert mean_malignant < 0.1  # the mean would hide it
    assert result.label == "malignant" and result.suspicion == pytest.approx(0.92)
    assert result.suspicious_slices == 1 and result.ranking[0] == 19


def test_a_normal_study_is_not_malignant_and_benign_vs_normal_is_not_claimed_when_unreliable():
    result = study_result([normal() for _ in range(10)], RULE)
    assert result.label == "" and result.suspicion is not None and result.suspicion < 0.1
    assert "cannot reliably tell benign from normal" in result.finding


def test_benign_and_normal_are_named_when_the_model_separates_them():
    rule = StudyRule(benign_normal_auc=0.9, separable_auc=0.8)
    assert study_result([normal() for _ in range(5)], rule).label == "normal"


def test_slices_that_are_not_assessable_never_count():
    slices = [None, normal(), None]
    result = study_result(slices, RULE)
    assert result.ranking == [1] and result.suspicious_slices == 0
    nothing = study_result([None, None], RULE)
    assert nothing.label == "" and nothing.suspicion is None and "could be assessed" in nothing.finding


def test_the_malignant_threshold_is_applied_to_the_calibrated_suspicion():
    strict = StudyRule(malignant_threshold=0.95, benign_normal_auc=None)
    result = study_result([malignant(0.9)], strict)
    assert result.label == "" and result.suspicious_slices == 1  # suspicious slice, study below the bar


def test_rule_round_trips_through_the_card():
    assert StudyRule.from_card({"study_rule": RULE.as_dict()}) == RULE
    assert StudyRule.from_card({}) == StudyRule()
