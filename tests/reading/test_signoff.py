"""Sign-off: a clinician's final reading beside the images, starting with nothing chosen; agree or
correct follows from the label read; amendments supersede and never overwrite."""

import re

import pytest
from django.urls import reverse

from audit.models import AuditEntry
from cases.models import Review
from tests.reading.studies import sign, study


@pytest.fixture
def suspicious(alice, patient):
    return study(patient, alice, suspicion=0.9)


def test_the_form_sits_beside_the_viewer_and_starts_with_nothing_chosen(client, bob, suspicious):
    client.force_login(bob)
    body = client.get(suspicious.get_absolute_url()).content.decode()
    room = body[body.index('class="reading-room"') :]
    assert room.index('class="reading-images"') < room.index('class="reading-form"')  # one grid, side by side
    form = body[
        body.index('class="reading-form"') : body.index("</form>", body.index('class="reading-form"'))
    ]
    radios = re.findall(r'<input type="radio"[^>]*>', form)
    assert len(radios) == 3 and not any("checked" in r for r in radios)
    assert "<fieldset>" in form and "<legend>Your reading (the AI says malignant)</legend>" in form
    assert "---------" not in form


@pytest.mark.parametrize(
    "label,verdict", [("malignant", "agree"), ("benign", "disagree"), ("normal", "disagree")]
)
def test_the_verdict_follows_the_label_read(client, bob, suspicious, label, verdict):
    client.force_login(bob)
    prediction = suspicious.predictions.get()
    response = client.post(
        reverse("cases:review_submit", args=[prediction.pk]), {"label": label, "comment": "ok"}
    )
    assert response.status_code == 302 and response["Location"] == f"{suspicious.get_absolute_url()}#reading"
    review = Review.objects.get()
    assert (review.reviewer, review.label, review.verdict, review.comment) == (bob, label, verdict, "ok")


def test_nothing_chosen_is_refused_with_a_message_and_nothing_stored(client, bob, suspicious):
    client.force_login(bob)
    prediction = suspicious.predictions.get()
    response = client.post(
        reverse("cases:review_submit", args=[prediction.pk]), {"comment": "hmm"}, follow=True
    )
    assert "Choose the label you read" in response.content.decode()
    assert not Review.objects.exists()


def test_a_signed_reading_shows_as_final_with_who_and_when(client, alice, bob, suspicious):
    review = sign(suspicious, bob, "malignant", comment="spiculated nodule")
    client.force_login(alice)
    body = client.get(suspicious.get_absolute_url()).content.decode()
    record = body[body.index(f'id="review-{review.pk}"') :]
    assert '<span class="reading reading-final">Final</span>' in record
    assert (
        "Signed by <strong>bob</strong>" in record and review.created_at.strftime("%Y-%m-%d %H:%M") in record
    )
    assert "agrees with the AI" in record and "spiculated nodule" in record


def test_an_amendment_supersedes_and_both_stay(client, alice, bob, suspicious):
    first = sign(suspicious, bob, "malignant")
    client.force_login(alice)
    prediction = suspicious.predictions.get()
    response = client.post(
        reverse("cases:review_submit", args=[prediction.pk]),
        {"label": "benign", "supersedes": first.pk, "comment": "calcified granuloma"},
    )
    assert response.status_code == 302
    amended = Review.objects.get(supersedes=first)
    first.refresh_from_db()
    assert (first.label, first.is_current) == ("malignant", False)  # never overwritten
    assert (amended.label, amended.verdict, amended.reviewer) == ("benign", "disagree", alice)
    body = client.get(suspicious.get_absolute_url()).content.decode()
    assert '<span class="reading reading-amended">Final (amended)</span>' in body
    assert '<span class="reading reading-superseded">Amended</span>' in body
    assert AuditEntry.objects.filter(action="review", object_id=amended.pk, user=alice).exists()
    # Amending the replaced reading again is refused: amendments form one line.
    again = client.post(
        reverse("cases:review_submit", args=[prediction.pk]),
        {"label": "normal", "supersedes": first.pk},
        follow=True,
    )
    assert Review.objects.count() == 2 and "amended already" in again.content.decode()


def test_no_form_until_the_prediction_succeeded(client, alice, patient):
    pending = study(patient, alice, status="queued")
    client.force_login(alice)
    body = client.get(pending.get_absolute_url()).content.decode()
    assert 'class="reading-form"' not in body


def test_outsiders_cannot_sign(client, charlie, suspicious):
    client.force_login(charlie)
    prediction = suspicious.predictions.get()
    assert (
        client.post(reverse("cases:review_submit", args=[prediction.pk]), {"label": "normal"}).status_code
        == 404
    )
    assert not Review.objects.exists()


@pytest.mark.parametrize("label,verdict", [("malignant", "agree"), ("normal", "disagree")])
def test_the_api_derives_the_verdict_from_the_label_too(bob, suspicious, label, verdict):
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(bob)
    prediction = suspicious.predictions.get()
    url = reverse("api:prediction-reviews", args=[prediction.pk])
    assert api.post(url, {}, format="json").json()["errors"] == {
        "label": ["Give the label you read (or a verdict)."]
    }
    response = api.post(url, {"label": label}, format="json")
    assert response.status_code == 201 and response.json()["verdict"] == verdict


def test_a_study_with_no_assessable_slice_cannot_be_signed_as_agreeing(client, alice, patient):
    blank = study(patient, alice, suspicion=None)
    prediction = blank.predictions.get()
    client.force_login(alice)
    body = client.get(blank.get_absolute_url()).content.decode()
    assert 'class="reading-form"' not in body and "no AI result to sign" in body
    response = client.post(
        reverse("cases:review_submit", args=[prediction.pk]), {"label": "normal"}, follow=True
    )
    assert "no AI result to agree with or correct" in response.content.decode()
    assert not Review.objects.exists()
