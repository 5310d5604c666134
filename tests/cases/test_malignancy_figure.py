"""One malignancy figure per study: its suspicion, with the operating threshold it is judged by.
The mean of the slice probabilities is labelled as such and never bold; per-slice probabilities
appear only per slice; "suspicious" means at or above the slice threshold, and the viewer's list
of slices by probability is "highest-ranked", not "most suspicious"."""

from __future__ import annotations

import re

import pytest

from cases.models import Prediction
from inference.study import StudyRule
from tests.reading.studies import study

pytestmark = pytest.mark.django_db


def text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def ai_card(page: str) -> str:
    """The scan page's AI result card, as HTML."""
    match = re.search(r'<section class="card" aria-labelledby="ai-result">(.*?)</section>', page, re.S)
    assert match, "no AI result card"
    return match.group(1)


@pytest.fixture
def scan(alice, patient):
    """A study the AI scored 65% (its top slice 65%, the other 32%): one slice above 50%."""
    return study(patient, alice, suspicion=0.65)


@pytest.fixture
def rule(scan):
    rule = scan.predictions.get().operating_rule
    assert isinstance(rule, StudyRule)  # the shipped card's rule, read from the model version
    return rule


def pct(value: float) -> str:
    return f"{round(value * 100)}%"


def test_the_study_shows_its_suspicion_with_its_operating_threshold(client, alice, scan, rule):
    client.force_login(alice)
    card = ai_card(client.get(scan.get_absolute_url()).content.decode())
    said = text(card)
    assert "Suspicion of malignancy (study) 65%" in said
    assert (
        f"Operating threshold {pct(rule.malignant_threshold)}: a study at or above it is called malignant"
        in said
    )
    assert (
        f"1 slice at or above the slice threshold ({pct(rule.slice_threshold)} probability of malignancy)"
        in said
    )
    assert "suspicious slice" not in said  # no count of "suspicious" slices without its threshold


def test_the_only_figures_outside_the_folded_means_are_the_suspicion_and_thresholds(
    client, alice, scan, rule
):
    client.force_login(alice)
    card = ai_card(client.get(scan.get_absolute_url()).content.decode())
    means = re.findall(r'<details class="mean-probs">(.*?)</details>', card, re.S)
    assert len(means) == 1 and "Mean of the slice probabilities (not the study's result)" in means[0]
    assert "Mean malignant" in text(means[0])
    outside = re.sub(r"<details.*?</details>", "", card, flags=re.S)
    assert re.findall(r"\d+%", text(outside)) == [
        "65%",
        pct(rule.malignant_threshold),
        pct(rule.slice_threshold),
    ]
    # No class bar is bold (`top`): the mean is not a competing study figure.
    assert " top" not in card


def test_a_result_from_before_the_study_rule_shows_its_means_open(client, alice, scan):
    Prediction.objects.filter(scan=scan).update(suspicion=None)
    client.force_login(alice)
    card = ai_card(client.get(scan.get_absolute_url()).content.decode())
    assert '<details class="mean-probs" open>' in card and "Suspicion of malignancy" not in card


def test_the_viewer_lists_highest_ranked_slices_and_how_many_reach_the_threshold(client, alice, scan, rule):
    client.force_login(alice)
    page = text(client.get(scan.get_absolute_url()).content.decode())
    assert "most suspicious slices" not in page.lower()
    assert (
        "Highest-ranked slices By each slice's probability of malignancy; 1 slice of this study reaches "
        f"the slice threshold ({pct(rule.slice_threshold)})."
    ) in page


def test_per_slice_probabilities_appear_per_slice_only(client, alice, scan, rule):
    client.force_login(alice)
    prediction = scan.predictions.get()
    page = client.get(prediction.get_absolute_url()).content.decode()
    table = re.search(r'<table class="slices stack">(.*?)</table>', page, re.S)
    assert table, "no per-slice table"
    before = page[: table.start()]
    # Bold class bars (each slice's most probable class) only inside the per-slice table.
    assert " top" not in before and table.group(1).count("prob prob-malignant top") == 2
    assert 'aria-label="class probabilities of this slice"' in table.group(1)
    assert (
        text(table.group(1)).count("Malignant 65%") == 1 and text(table.group(1)).count("Malignant 32%") == 1
    )
    assert f"A slice at or above {pct(rule.slice_threshold)} malignant is a suspicious slice." in text(page)
    assert "Suspicion of malignancy (study) 65%" in text(before)
