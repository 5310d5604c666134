"""One signed report per study (issue 21): a second signature is a conflict that names who signed,
even at the same instant (the database's constraint, with two real threads); the signer's own
correction amends; addenda are appended to a signed report; a second reader records a second
opinion, flagged where it disagrees and counted once per study; a rerun of the AI leaves the study
read; outsiders get 404; and the migration keeps every reading, demoting later "final" ones."""

from __future__ import annotations

import threading
from datetime import date, timedelta
from typing import Any

import pytest
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import AuditEntry
from cases import services
from cases.agreement import ReaderAgreement, agreement_by_model_version, reader_agreement
from cases.models import Addendum, Prediction, Review
from inference.models import ModelVersion
from tests.cases.test_study_migration import migrated
from tests.reading.studies import sign, study


def api(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def worklist_item(user: Any, scan: Any) -> dict[str, Any]:
    response = api(user).get(reverse("api:worklist"))
    assert response.status_code == 200, response.json()
    (item,) = [i for i in response.json()["results"] if i["scan"] == scan.pk]
    return item


def conflict_text(report: Review) -> str:
    signed = timezone.localtime(report.created_at)
    return (
        f"Final report already signed by {report.reviewer.username} on {signed:%Y-%m-%d %H:%M}; "
        "add an addendum or record a second opinion."
    )


@pytest.fixture
def suspicious(alice, patient):
    return study(patient, alice, suspicion=0.9)


# --- one report: a second signature is a conflict naming who signed -------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_readers_signing_at_the_same_instant_give_one_report_and_one_conflict(
    alice, bob, slice_result, monkeypatch
):
    """Both pass the service's check before either writes (a barrier holds them there), so the
    database's constraint decides: one report, and one conflict naming its signer."""
    prediction_id = slice_result.prediction_id
    both_checked = threading.Barrier(2, timeout=30)
    full_clean = Review.full_clean

    def checked_then_wait(self: Review, *args: Any, **kwargs: Any) -> None:
        full_clean(self, *args, **kwargs)
        both_checked.wait()

    monkeypatch.setattr(Review, "full_clean", checked_then_wait)
    outcomes: dict[str, Any] = {}

    def sign_as(user: Any) -> None:
        try:
            prediction = Prediction.objects.select_related("scan").get(pk=prediction_id)
            outcomes[user.username] = services.review_submit(
                prediction=prediction, reviewer=user, verdict="agree"
            )
        except BaseException as exc:  # told to the test, not lost in the thread
            outcomes[user.username] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=sign_as, args=(user,)) for user in (alice, bob)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    report = Review.objects.get()
    assert report.kind == "report" and report.study_id == slice_result.prediction.scan.study_id
    winner, loser = (alice, bob) if report.reviewer == alice else (bob, alice)
    assert outcomes[winner.username] == report
    refused = outcomes[loser.username]
    assert isinstance(refused, services.ReportConflict), refused
    assert refused.messages == [conflict_text(report)]
    assert f"signed by {winner.username} on" in str(refused.messages)


def test_a_second_signature_is_refused_naming_who_signed_and_when(alice, bob, suspicious):
    report = sign(suspicious, alice, "malignant")
    with pytest.raises(services.ReportConflict) as refused:
        sign(suspicious, bob, "benign")
    assert refused.value.messages == [conflict_text(report)]
    assert Review.objects.get() == report


def test_the_constraint_alone_refuses_a_second_report(alice, bob, suspicious, monkeypatch):
    """Where the service's own check is passed (as in a race), the database's constraint refuses
    the second report, and the refusal is the same conflict, not an error."""
    report = sign(suspicious, alice, "malignant")
    from cases.services import reviews

    check = reviews._refuse_a_second_original
    calls: list[str] = []

    def passed_once(study: Any, reviewer: Any, kind: str) -> None:
        calls.append(kind)
        if len(calls) > 1:  # after the IntegrityError: the real check names the signer
            check(study, reviewer, kind)

    monkeypatch.setattr(reviews, "_refuse_a_second_original", passed_once)
    with pytest.raises(services.ReportConflict) as refused:
        sign(suspicious, bob, "benign")
    assert len(calls) == 2 and refused.value.messages == [conflict_text(report)]
    assert Review.objects.get() == report


def test_a_second_signature_through_the_api_is_409(alice, bob, suspicious):
    report = sign(suspicious, alice, "malignant")
    prediction = suspicious.predictions.get()
    response = api(bob).post(
        reverse("api:prediction-reviews", args=[prediction.pk]), {"label": "benign"}, format="json"
    )
    assert response.status_code == 409
    assert response.json() == {"detail": conflict_text(report), "errors": {}}
    assert Review.objects.get() == report


def test_the_page_shows_the_conflict_and_offers_a_second_opinion(client, alice, bob, suspicious):
    report = sign(suspicious, alice, "malignant")
    prediction = suspicious.predictions.get()
    client.force_login(bob)
    page = client.get(suspicious.get_absolute_url()).content.decode()
    assert '<option value="second_opinion" selected>' in page  # the form proposes a second opinion
    assert f"The report is signed by alice ({timezone.localtime(report.created_at):%Y-%m-%d %H:%M})" in page
    response = client.post(
        reverse("cases:review_submit", args=[prediction.pk]),
        {"label": "benign", "kind": "report"},
        follow=True,
    )
    assert response.status_code == 200
    assert conflict_text(report) in response.content.decode()
    assert Review.objects.get() == report


def test_the_signers_own_correction_amends_the_report(alice, suspicious):
    report = sign(suspicious, alice, "malignant")
    amended = sign(suspicious, alice, "benign", amends=report)
    assert (amended.kind, amended.supersedes, amended.study_id) == ("report", report, report.study_id)
    item = worklist_item(alice, suspicious)
    assert (item["reading"], item["read_label"], item["read_by"]) == ("amended", "benign", "alice")
    with pytest.raises(ValidationError, match="already reviewed this study"):
        sign(suspicious, alice, "normal")  # a new original of the same reader: correct instead


# --- addenda ----------------------------------------------------------------------------------------


def test_an_addendum_is_appended_to_the_signed_report(client, alice, bob, suspicious):
    report = sign(suspicious, alice, "malignant", comment="spiculated nodule")
    url = reverse("api:study-addendum", args=[suspicious.study_id])
    response = api(bob).post(url, {"text": "  Compared with the CT of 2025: new.  "}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    addendum = Addendum.objects.get()
    assert body["id"] == addendum.pk and body["report"] == report.pk and body["author"] == "bob"
    assert addendum.text == "Compared with the CT of 2025: new."
    report.refresh_from_db()
    assert (report.label, report.comment) == ("malignant", "spiculated nodule")  # as signed
    assert AuditEntry.objects.filter(
        action="create", object_type="addendum", object_id=addendum.pk, username="bob"
    ).exists()
    assert worklist_item(alice, suspicious)["reading"] == "addended"
    client.force_login(alice)
    page = client.get(suspicious.get_absolute_url()).content.decode()
    record = page[page.index(f'id="review-{report.pk}"') :]
    assert '<span class="reading reading-addended">Final (addended)</span>' in record
    assert f'id="addendum-{addendum.pk}"' in record and "Compared with the CT of 2025: new." in record
    reading = api(alice).get(reverse("api:study-report", args=[suspicious.study_id])).json()
    assert reading["state"] == "addended" and reading["report"]["id"] == report.pk
    assert [a["text"] for a in reading["report"]["addenda"]] == ["Compared with the CT of 2025: new."]


def test_an_addendum_from_the_page(client, alice, suspicious):
    report = sign(suspicious, alice, "benign")
    client.force_login(alice)
    page = client.get(suspicious.get_absolute_url()).content.decode()
    assert reverse("cases:addendum_add", args=[suspicious.study_id]) in page
    response = client.post(
        reverse("cases:addendum_add", args=[suspicious.study_id]), {"text": "Calcified: benign."}, follow=True
    )
    assert (
        response.status_code == 200 and "Your addendum is added to the report." in response.content.decode()
    )
    assert Addendum.objects.get().report == report


def test_an_addendum_needs_a_signed_report(alice, suspicious):
    response = api(alice).post(
        reverse("api:study-addendum", args=[suspicious.study_id]), {"text": "early words"}, format="json"
    )
    assert (
        response.status_code == 400 and "no signed report" in response.json()["errors"]["non_field_errors"][0]
    )
    assert not Addendum.objects.exists()


def test_addenda_cannot_be_changed_or_deleted_in_admin(rf, admin_user):
    request = rf.get("/")
    request.user = admin_user
    addenda = admin.site._registry[Addendum]
    assert not addenda.has_add_permission(request)
    assert not addenda.has_change_permission(request) and not addenda.has_delete_permission(request)


# --- second opinions ---------------------------------------------------------------------------------


def test_a_disagreeing_second_opinion_is_flagged_and_counted_once(client, admin_user, alice, bob, suspicious):
    report = sign(suspicious, alice, "malignant")
    prediction = suspicious.predictions.get()
    response = api(bob).post(
        reverse("api:prediction-reviews", args=[prediction.pk]),
        {"label": "benign", "kind": "second_opinion", "comment": "calcified"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    opinion = Review.objects.get(pk=response.json()["id"])
    assert (opinion.kind, opinion.reviewer, opinion.label) == ("second_opinion", bob, "benign")
    # The study's reading stays the report; the row is flagged.
    item = worklist_item(alice, suspicious)
    assert (item["reading"], item["read_label"], item["read_by"], item["disagreement"]) == (
        "final",
        "malignant",
        "alice",
        True,
    )
    client.force_login(alice)
    page = client.get(suspicious.get_absolute_url()).content.decode()
    record = page[page.index(f'id="review-{opinion.pk}"') :]
    assert '<span class="reading reading-second-opinion">Second opinion</span>' in record
    assert "Disagrees with the report (malignant)" in record
    worklist_page = client.get(reverse("cases:dashboard")).content.decode()
    assert "Second opinion disagrees" in worklist_page
    # Its own correction to the report's label ends the disagreement; a third reader's dissent
    # flags it again, and the study counts once however many opinions it has.
    sign(suspicious, bob, "malignant", amends=opinion)
    assert worklist_item(alice, suspicious)["disagreement"] is False
    assert reader_agreement() == ReaderAgreement(studies=1, disagreed=0)
    dora = type(alice).objects.create(username="dora")
    dora.care_teams.add(*alice.care_teams.all())
    sign(suspicious, dora, "normal", kind="second_opinion")
    sign(suspicious, alice, "benign", amends=report)  # the report amended: both opinions now differ
    assert worklist_item(alice, suspicious)["disagreement"] is True
    assert reader_agreement() == ReaderAgreement(studies=1, disagreed=1)
    (version,) = agreement_by_model_version()
    assert (version.reviews, version.predictions) == (1, 1)  # the report only, against the AI
    client.force_login(admin_user)
    agreement = client.get(reverse("cases:agreement")).content.decode()
    assert "1 study with a signed report and a second opinion" in agreement
    assert "the readers disagree on <strong>1</strong>" in agreement
    reading = api(alice).get(reverse("api:study-report", args=[suspicious.study_id])).json()
    assert reading["disagreement"] is True and reading["state"] == "amended"
    assert [r["reviewer"] for r in reading["second_opinions"] if r["superseded_by"] is None] == [
        "dora",
        "bob",
    ]
    assert [r["id"] for r in reading["earlier_versions"]] == [report.pk]


def test_the_report_signer_cannot_also_give_a_second_opinion(alice, suspicious):
    sign(suspicious, alice, "malignant")
    with pytest.raises(ValidationError, match="already reviewed this study"):
        sign(suspicious, alice, "benign", kind="second_opinion")


# --- the reading belongs to the study --------------------------------------------------------------


def test_a_rerun_of_the_ai_keeps_the_study_read(alice, bob, suspicious):
    report = sign(suspicious, alice, "malignant")
    version = ModelVersion.objects.create(name="v-next", sha256="e" * 64, weights_dir="x")
    rerun = Prediction.objects.create(
        scan=suspicious,
        model_version=version,
        status="succeeded",
        label="benign",
        suspicion=0.2,
        finding="No sign of malignancy; most likely benign.",
        created_at=timezone.now() + timedelta(seconds=5),
    )
    item = worklist_item(alice, suspicious)
    assert (item["prediction"], item["ai_label"]) == (rerun.pk, "benign")  # the newer AI result
    assert (item["reading"], item["read_label"], item["read_by"]) == ("final", "malignant", "alice")
    # Still one report per study: a signature on the newer result is the same conflict ...
    with pytest.raises(services.ReportConflict):
        services.review_submit(prediction=rerun, reviewer=bob, verdict="agree")
    # ... and the signer's correction on it amends the report signed on the earlier one.
    amended = services.review_submit(prediction=rerun, reviewer=alice, verdict="agree", supersedes=report.pk)
    assert (amended.prediction, amended.supersedes, amended.kind) == (rerun, report, "report")
    assert worklist_item(alice, suspicious)["reading"] == "amended"


# --- team scoping -----------------------------------------------------------------------------------


def test_outsiders_get_404_for_the_report_and_addenda(client, alice, charlie, suspicious):
    sign(suspicious, alice, "malignant")
    study_id = suspicious.study_id
    assert api(charlie).get(reverse("api:study-report", args=[study_id])).status_code == 404
    refused = api(charlie).post(reverse("api:study-addendum", args=[study_id]), {"text": "x"}, format="json")
    assert refused.status_code == 404
    client.force_login(charlie)
    assert client.post(reverse("cases:addendum_add", args=[study_id]), {"text": "x"}).status_code == 404
    assert not Addendum.objects.exists()
    assert AuditEntry.objects.filter(action="refused", object_type="study", object_id=study_id).exists()


# --- the migration -----------------------------------------------------------------------------------

BEFORE = [("cases", "0014_slice_sop_instance_uid_index")]
AFTER = [("cases", "0017_report_once_per_study")]


@pytest.fixture
def at_latest():
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_every_reading_and_demotes_a_second_final(at_latest):
    old = migrated(BEFORE)
    team = old.get_model("cases", "CareTeam").objects.create(name="Chest")
    patient = old.get_model("cases", "Patient").objects.create(
        team=team, mrn="A-1", name="Ann Lee", birth_date=date(1950, 1, 1)
    )
    User = old.get_model("auth", "User")
    ann, ben, cat = (User.objects.create(username=name) for name in ("ann", "ben", "cat"))
    version = old.get_model("inference", "ModelVersion").objects.create(name="v-m", sha256="2" * 64)
    Study, Scan = old.get_model("cases", "Study"), old.get_model("cases", "Scan")
    Prediction = old.get_model("cases", "Prediction")
    Review = old.get_model("cases", "Review")

    def prediction_of_a_new_study() -> Any:
        study = Study.objects.create(patient=patient)
        scan = Scan.objects.create(patient=patient, study=study)
        return Prediction.objects.create(
            scan=scan, model_version=version, status="succeeded", label="malignant", finding="a finding"
        )

    now = timezone.now()
    both = prediction_of_a_new_study()  # two clinicians both signed a "final" reading
    first = Review.objects.create(
        prediction=both, reviewer=ann, verdict="agree", label="malignant", created_at=now
    )
    later = Review.objects.create(
        prediction=both, reviewer=ben, verdict="disagree", label="benign", created_at=now + timedelta(hours=1)
    )
    later_fixed = Review.objects.create(
        prediction=both,
        reviewer=ben,
        verdict="disagree",
        label="normal",
        supersedes=later,
        created_at=now + timedelta(hours=2),
    )
    third = Review.objects.create(
        prediction=both, reviewer=cat, verdict="agree", label="malignant", created_at=now + timedelta(hours=3)
    )
    alone = prediction_of_a_new_study()
    single = Review.objects.create(prediction=alone, reviewer=ann, verdict="agree", label="malignant")
    single_fixed = Review.objects.create(
        prediction=alone, reviewer=ann, verdict="disagree", label="benign", supersedes=single
    )
    before = {
        name: old.get_model("cases", name).objects.count() for name in ("Review", "Prediction", "Study")
    }

    new = migrated(AFTER)

    after = {name: new.get_model("cases", name).objects.count() for name in ("Review", "Prediction", "Study")}
    assert after == before == {"Review": 6, "Prediction": 2, "Study": 2}
    rows = {r.pk: r for r in new.get_model("cases", "Review").objects.all()}
    kinds = {pk: (row.kind, row.study_id, row.label, row.reviewer_id) for pk, row in rows.items()}
    both_study, alone_study = both.scan.study_id, alone.scan.study_id
    assert kinds == {
        first.pk: ("report", both_study, "malignant", ann.pk),  # the earliest stays the report
        later.pk: ("second_opinion", both_study, "benign", ben.pk),  # later "finals": second opinions,
        later_fixed.pk: ("second_opinion", both_study, "normal", ben.pk),  # with their corrections
        third.pk: ("second_opinion", both_study, "malignant", cat.pk),
        single.pk: ("report", alone_study, "malignant", ann.pk),
        single_fixed.pk: ("report", alone_study, "benign", ann.pk),
    }
    assert rows[later_fixed.pk].supersedes_id == later.pk and rows[single_fixed.pk].supersedes_id == single.pk
