"""Clinicians review finished predictions: agree, or disagree with the label they read."""

import pytest
from django.urls import reverse
from knox.models import AuthToken
from rest_framework.test import APIClient

from cases.models import Review


def api(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {AuthToken.objects.create(user)[1]}")
    return client


def test_teammate_disagrees_in_the_page_and_it_shows_in_history(client, bob, slice_result):
    finished = slice_result.prediction
    client.force_login(bob)
    response = client.post(
        reverse("cases:review_submit", args=[finished.pk]),
        {"label": "malignant", "comment": "spiculated margin"},
    )
    assert response.status_code == 302 and response["Location"].endswith("#reading")
    review = Review.objects.get()
    assert (review.reviewer, review.verdict, review.label) == (bob, "disagree", "malignant")
    page = client.get(finished.scan.patient.get_absolute_url()).content.decode()
    assert "spiculated margin" in page and "corrects the AI" in page and "Signed by" in page


def test_agreeing_takes_the_models_label(alice, slice_result):
    response = api(alice).post(
        reverse("api:prediction-reviews", args=[slice_result.prediction_id]),
        {"verdict": "agree"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["label"] == "benign" and response.json()["reviewer"] == "alice"


@pytest.mark.parametrize(
    "payload,field",
    [
        ({"verdict": "disagree"}, "label"),
        ({"verdict": "disagree", "label": "benign"}, "label"),
        ({"verdict": "agree", "label": "normal"}, "label"),
        ({"verdict": "maybe"}, "verdict"),
    ],
)
def test_inconsistent_reviews_are_refused(alice, slice_result, payload, field):
    response = api(alice).post(
        reverse("api:prediction-reviews", args=[slice_result.prediction_id]), payload, format="json"
    )
    assert response.status_code == 400 and field in response.json()["errors"]
    assert not Review.objects.exists()


def test_one_review_per_reviewer(alice, slice_result):
    url = reverse("api:prediction-reviews", args=[slice_result.prediction_id])
    client = api(alice)
    assert client.post(url, {"verdict": "agree"}, format="json").status_code == 201
    second = client.post(url, {"verdict": "agree"}, format="json")
    assert second.status_code == 400 and "already reviewed" in str(second.json()["errors"])


def test_unfinished_predictions_cannot_be_reviewed(alice, prediction):
    response = api(alice).post(
        reverse("api:prediction-reviews", args=[prediction.pk]), {"verdict": "agree"}, format="json"
    )
    assert response.status_code == 400 and "succeeded" in str(response.json()["errors"])


@pytest.mark.parametrize("who,status", [("bob", 201), ("charlie", 404), ("admin_user", 404)])
def test_reviews_are_scoped_to_the_care_team(request, slice_result, who, status):
    response = api(request.getfixturevalue(who)).post(
        reverse("api:prediction-reviews", args=[slice_result.prediction_id]),
        {"verdict": "agree"},
        format="json",
    )
    assert response.status_code == status


@pytest.mark.parametrize("who,status", [("charlie", 404), ("admin_user", 404)])
def test_review_page_post_is_scoped(client, request, slice_result, who, status):
    client.force_login(request.getfixturevalue(who))
    url = reverse("cases:review_submit", args=[slice_result.prediction_id])
    assert client.post(url, {"verdict": "agree"}).status_code == status
    assert not Review.objects.exists()


def test_anonymous_review_is_refused(client, slice_result):
    assert (
        APIClient()
        .post(
            reverse("api:prediction-reviews", args=[slice_result.prediction_id]),
            {"verdict": "agree"},
            format="json",
        )
        .status_code
        == 401
    )
    response = client.post(
        reverse("cases:review_submit", args=[slice_result.prediction_id]), {"verdict": "agree"}
    )
    assert response.status_code == 302 and not Review.objects.exists()


def test_history_shows_a_review_under_its_prediction_series_and_study(alice, patient, slice_result):
    api(alice).post(
        reverse("api:prediction-reviews", args=[slice_result.prediction_id]),
        {"verdict": "agree"},
        format="json",
    )
    (study,) = api(alice).get(reverse("api:patient-history", args=[patient.pk])).json()["results"]
    scan = slice_result.prediction.scan
    (series,) = study["series"]
    (prediction,) = series["predictions"]
    assert (study["id"], series["id"]) == (scan.study_id, scan.pk)
    assert prediction["id"] == slice_result.prediction_id
    assert [review["verdict"] for review in prediction["reviews"]] == ["agree"]


@pytest.fixture
def not_malignant(slice_result):
    """A result whose rule named no label: not malignant, benign and normal not told apart."""
    prediction = slice_result.prediction
    type(prediction).objects.filter(pk=prediction.pk).update(
        label="", finding="No sign of malignancy. This model cannot reliably tell benign from normal."
    )
    return prediction


def test_agreeing_with_not_malignant_needs_benign_or_normal(alice, not_malignant):
    url = reverse("api:prediction-reviews", args=[not_malignant.pk])
    refused = api(alice).post(url, {"verdict": "agree"}, format="json")
    assert refused.status_code == 400 and "benign or normal" in str(refused.json()["errors"]["label"])
    agreed = api(alice).post(url, {"verdict": "agree", "label": "normal"}, format="json")
    assert agreed.status_code == 201 and agreed.json()["label"] == "normal"


def test_disagreeing_with_not_malignant_means_malignant(bob, not_malignant):
    url = reverse("api:prediction-reviews", args=[not_malignant.pk])
    refused = api(bob).post(url, {"verdict": "disagree", "label": "benign"}, format="json")
    assert refused.status_code == 400 and "means malignant" in str(refused.json()["errors"]["label"])
    disagreed = api(bob).post(url, {"verdict": "disagree"}, format="json")
    assert disagreed.status_code == 201 and disagreed.json()["label"] == "malignant"
