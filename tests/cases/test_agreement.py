"""Agreement between the AI's labels and the reviewed labels, per model version: admins only.

Known data (each study counts once, by its current report; superseded versions and second
opinions never count against the AI; readers' disagreement is counted once per study):

    version v1 (older)                          version v2 (newer)
    P1 AI malignant: alice's report malignant,  P6 AI benign: alice's report benign
       bob's second opinion benign -> corrected to malignant (readers agree)
    P2 AI benign: alice's report benign -> malignant -> normal
    P3 AI "" (not malignant): alice's report benign, bob's second opinion malignant (readers disagree)
    P4 AI normal: alice's report normal
    P5 AI normal: no review (not counted)
"""

import pytest
from django.core.cache import cache
from django.urls import reverse
from knox.models import AuthToken
from rest_framework.test import APIClient

from cases.agreement import (
    ClassAgreement,
    MatrixRow,
    ReaderAgreement,
    agreement_by_model_version,
    reader_agreement,
)
from cases.models import Prediction, Review, Scan, Study
from inference.models import ModelVersion
from tests.factories import PatientFactory

PAGE = reverse("cases:agreement")
API = reverse("api:agreement")


@pytest.fixture(autouse=True)
def fresh_throttles():
    cache.clear()


def _version(name: str) -> ModelVersion:
    return ModelVersion.objects.create(name=name, sha256=name.ljust(64, "0"), weights_dir="x")


def _prediction(version: ModelVersion, label: str, *, patient=None, status: str = "succeeded") -> Prediction:
    patient = patient or PatientFactory.create()
    scan = Scan.objects.create(patient=patient, study=Study.objects.create(patient=patient))
    return Prediction.objects.create(
        scan=scan, model_version=version, status=status, label=label, finding="a finding"
    )


def _review(
    prediction: Prediction, reviewer, label: str, supersedes: Review | None = None, kind: str = "report"
) -> Review:
    verdict = "agree" if label == prediction.label else "disagree"
    return Review.objects.create(
        prediction=prediction,
        study_id=prediction.scan.study_id,
        kind=supersedes.kind if supersedes else kind,
        reviewer=reviewer,
        verdict=verdict,
        label=label,
        supersedes=supersedes,
    )


OPINION = "second_opinion"


@pytest.fixture
def reviewed(alice, bob, team_a):
    v1, v2 = _version("v1"), _version("v2")
    patient = PatientFactory(team=team_a)
    p1 = _prediction(v1, "malignant", patient=patient)
    _review(p1, alice, "malignant")
    _review(p1, bob, "malignant", supersedes=_review(p1, bob, "benign", kind=OPINION))
    p2 = _prediction(v1, "benign", patient=patient)
    first = _review(p2, alice, "benign")
    _review(p2, alice, "normal", supersedes=_review(p2, alice, "malignant", supersedes=first))
    p3 = _prediction(v1, "", patient=patient)
    _review(p3, alice, "benign")
    _review(p3, bob, "malignant", kind=OPINION)
    _review(_prediction(v1, "normal", patient=patient), alice, "normal")
    _prediction(v1, "normal", patient=patient)  # not reviewed
    _prediction(v1, "", patient=patient, status="queued")  # not finished
    _review(_prediction(v2, "benign", patient=patient), alice, "benign")
    return v1, v2


def test_agreement_figures_on_known_data(reviewed):
    v1, v2 = reviewed
    newer, older = agreement_by_model_version()

    assert (newer.model_version_id, newer.model_version) == (v2.pk, "v2")
    assert (newer.predictions, newer.reviews, newer.agreed, newer.agreement_rate) == (1, 1, 1, 1.0)
    assert newer.classes == (
        ClassAgreement("normal", ai=0, reviewed=0, both=0),
        ClassAgreement("benign", ai=1, reviewed=1, both=1),
        ClassAgreement("malignant", ai=0, reviewed=0, both=0),
    )
    assert [c.confirmed_rate for c in newer.classes] == [None, 1.0, None]
    assert [c.found_rate for c in newer.classes] == [None, 1.0, None]

    assert (older.model_version_id, older.model_version) == (v1.pk, "v1")
    # One report per study: superseded versions (alice's benign and malignant on P2) and bob's
    # second opinions (P1, P3) are not counted against the AI.
    assert (older.predictions, older.reviews, older.agreed) == (4, 4, 3)
    assert older.agreement_rate == pytest.approx(3 / 4)
    assert older.rows == (  # columns: normal, benign, malignant
        MatrixRow("normal", (1, 0, 0)),
        MatrixRow("benign", (1, 0, 0)),
        MatrixRow("malignant", (0, 0, 1)),
        MatrixRow("not_malignant", (0, 1, 0)),
    )
    assert older.matrix["not_malignant"] == {"normal": 0, "benign": 1, "malignant": 0}
    assert older.classes == (
        ClassAgreement("normal", ai=1, reviewed=2, both=1),
        ClassAgreement("benign", ai=1, reviewed=1, both=0),
        ClassAgreement("malignant", ai=1, reviewed=1, both=1),
    )
    assert [c.confirmed_rate for c in older.classes] == [1.0, 0.0, 1.0]
    assert [c.found_rate for c in older.classes] == [0.5, 0.0, 1.0]


def test_readers_disagreement_is_counted_once_per_study(reviewed, alice, bob, charlie):
    assert reader_agreement() == ReaderAgreement(studies=2, disagreed=1)  # P1 agrees, P3 does not
    p3 = Review.objects.get(kind=OPINION, label="malignant", supersedes__isnull=True).prediction
    _review(p3, charlie, "normal", kind=OPINION)  # a second dissent on P3: still one study
    assert reader_agreement() == ReaderAgreement(studies=2, disagreed=1)
    assert reader_agreement().agreement_rate == pytest.approx(1 / 2)


def test_a_version_without_current_reviews_is_not_listed(db):
    _prediction(_version("unreviewed"), "malignant")
    assert agreement_by_model_version() == []


# --- the page -----------------------------------------------------------------------------------


def test_admin_sees_the_figures_on_the_page(client, admin_user, reviewed):
    client.force_login(admin_user)
    response = client.get(PAGE)
    assert response.status_code == 200
    page = response.content.decode()
    assert "reviewed cases only" in page
    assert page.index("Model version v2") < page.index("Model version v1")  # newest first
    assert "4 reviewed predictions, 4 signed reports" in page and "agreement 3 of 4 (75%)" in page
    # Cells are shaded by their share of the row, with classes (the CSP forbids inline styles).
    assert 'class="cell-10" data-ai="malignant" data-reviewed="malignant">1<' in page
    assert 'class="cell-10" data-ai="not_malignant" data-reviewed="benign">1<' in page
    assert 'class="cell-0" data-ai="benign" data-reviewed="benign">0<' in page
    assert "Not malignant" in page and "style=" not in page
    assert "<td>1</td><td>2</td><td>1</td>" in page  # normal: AI said it, reviewers did, both
    assert "<td>100%</td>\n      <td>50%</td>" in page
    # Second opinions: each study once, whatever its second opinions.
    assert "2 studies with a signed report and a second opinion" in page
    assert "the readers disagree on <strong>1</strong> (agreement 50%)" in page


@pytest.mark.parametrize("who", ["alice", "charlie"])
def test_clinicians_get_403_for_the_page(client, request, who, reviewed):
    client.force_login(request.getfixturevalue(who))
    response = client.get(PAGE)
    assert response.status_code == 403
    assert "agreement" not in response.content.decode().lower()


def test_anonymous_is_sent_to_login_for_the_page(client, reviewed):
    response = client.get(PAGE)
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_only_staff_see_the_link_in_the_navigation(client, alice, admin_user):
    client.force_login(alice)
    assert PAGE not in client.get(reverse("cases:dashboard")).content.decode()
    client.force_login(admin_user)
    assert f'href="{PAGE}"' in client.get(reverse("cases:dashboard")).content.decode()


def test_the_page_shows_when_nothing_is_reviewed(client, admin_user):
    client.force_login(admin_user)
    response = client.get(PAGE)
    assert response.status_code == 200 and "No reviewed predictions yet." in response.content.decode()


# --- the API ------------------------------------------------------------------------------------


def api(user=None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Token {AuthToken.objects.create(user)[1]}")
    return client


def test_admin_gets_the_figures_from_the_api(admin_user, reviewed):
    v1, v2 = reviewed
    response = api(admin_user).get(API)
    assert response.status_code == 200
    newer, older = response.json()
    zeros = {"normal": 0, "benign": 0, "malignant": 0}
    assert newer == {
        "model_version_id": v2.pk,
        "model_version": "v2",
        "predictions": 1,
        "reviews": 1,
        "agreed": 1,
        "agreement_rate": 1.0,
        "matrix": {
            "normal": zeros,
            "benign": {**zeros, "benign": 1},
            "malignant": zeros,
            "not_malignant": zeros,
        },
        "classes": [
            {
                "label": "normal",
                "ai": 0,
                "reviewed": 0,
                "both": 0,
                "confirmed_rate": None,
                "found_rate": None,
            },
            {"label": "benign", "ai": 1, "reviewed": 1, "both": 1, "confirmed_rate": 1.0, "found_rate": 1.0},
            {
                "label": "malignant",
                "ai": 0,
                "reviewed": 0,
                "both": 0,
                "confirmed_rate": None,
                "found_rate": None,
            },
        ],
    }
    assert {k: older[k] for k in ("model_version_id", "predictions", "reviews", "agreed")} == {
        "model_version_id": v1.pk,
        "predictions": 4,
        "reviews": 4,
        "agreed": 3,
    }
    assert older["agreement_rate"] == pytest.approx(3 / 4)
    assert older["matrix"] == {
        "normal": {"normal": 1, "benign": 0, "malignant": 0},
        "benign": {"normal": 1, "benign": 0, "malignant": 0},
        "malignant": {"normal": 0, "benign": 0, "malignant": 1},
        "not_malignant": {"normal": 0, "benign": 1, "malignant": 0},
    }
    assert [(c["label"], c["ai"], c["reviewed"], c["both"]) for c in older["classes"]] == [
        ("normal", 1, 2, 1),
        ("benign", 1, 1, 0),
        ("malignant", 1, 1, 1),
    ]
    assert [c["confirmed_rate"] for c in older["classes"]] == [1.0, 0.0, 1.0]
    assert [c["found_rate"] for c in older["classes"]] == [0.5, 0.0, 1.0]


@pytest.mark.parametrize("who", ["alice", "charlie"])
def test_clinicians_get_403_from_the_api(request, who, reviewed):
    response = api(request.getfixturevalue(who)).get(API)
    assert response.status_code == 403 and set(response.json()) == {"detail", "errors"}


def test_anonymous_gets_401_from_the_api(reviewed):
    response = api().get(API)
    assert response.status_code == 401 and set(response.json()) == {"detail", "errors"}


# --- query counts -------------------------------------------------------------------------------


def _add_rows(alice, bob, n: int) -> None:
    """More versions, predictions, reports and second opinions (with corrections) of every kind."""
    version = _version(f"more-{n}")
    for i in range(n):
        prediction = _prediction(version, ["normal", "benign", "malignant", ""][i % 4])
        _review(prediction, alice, ["normal", "benign", "malignant"][i % 3])
        _review(prediction, bob, "malignant", supersedes=_review(prediction, bob, "benign", kind=OPINION))


def test_page_query_count_does_not_grow_with_rows(
    client, admin_user, alice, bob, reviewed, django_assert_max_num_queries
):
    client.force_login(admin_user)
    with django_assert_max_num_queries(8) as few:  # session, user, 3 aggregates, session save
        assert client.get(PAGE).status_code == 200
    _add_rows(alice, bob, 12)
    with django_assert_max_num_queries(len(few.captured_queries)):
        page = client.get(PAGE).content.decode()
    assert "Model version more-12" in page and "12 reviewed predictions, 12 signed reports" in page


def test_api_query_count_does_not_grow_with_rows(
    admin_user, alice, bob, reviewed, django_assert_max_num_queries
):
    client = api(admin_user)
    with django_assert_max_num_queries(4) as few:  # the token (2), the 2 aggregates
        assert client.get(API).status_code == 200
    _add_rows(alice, bob, 12)
    with django_assert_max_num_queries(len(few.captured_queries)):
        body = client.get(API).json()
    assert len(body) == 3 and (body[0]["model_version"], body[0]["reviews"]) == ("more-12", 12)
