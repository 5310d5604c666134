"""The worklist: unread first, the most suspicious on top, every state visible, the same on the
page and in the API, filtered by each column, scoped to the viewer's teams."""

from datetime import date

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from audit.models import AuditEntry
from cases.models import CareTeam
from tests import factories
from tests.reading.studies import sign, study


@pytest.fixture
def studies(alice, patient):
    """Six studies of one patient, one per state, plus one already read."""
    return {
        "low": study(patient, alice, suspicion=0.08, study_date=date(2026, 10, 1)),
        "high": study(patient, alice, suspicion=0.93, study_date=date(2026, 9, 1)),
        "middle": study(patient, alice, suspicion=0.41, study_date=date(2026, 11, 1)),
        "failed": study(patient, alice, status="failed", study_date=date(2026, 11, 2)),
        "unassessable": study(patient, alice, suspicion=None, study_date=date(2026, 11, 3)),
        "queued": study(patient, alice, status="queued", study_date=date(2026, 11, 4)),
        "read": study(patient, alice, suspicion=0.99, study_date=date(2026, 8, 1)),
    }


def api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def worklist(user, **filters):
    response = api(user).get(reverse("api:worklist"), filters)
    assert response.status_code == 200, response.json()
    return response.json()


def test_unread_first_then_by_suspicion_with_unscored_studies_after(alice, bob, studies):
    sign(studies["read"], bob, "malignant", comment="spiculated")
    items = worklist(alice)["results"]
    order = [item["scan"] for item in items]
    expected = ["high", "middle", "low", "queued", "unassessable", "failed", "read"]
    assert order == [studies[name].pk for name in expected]
    by_name = {name: items[order.index(studies[name].pk)] for name in studies}
    assert by_name["failed"]["state"] == "failed" and by_name["unassessable"]["state"] == "not_assessable"
    assert by_name["unassessable"]["not_assessable_slices"] == 2 and by_name["queued"]["state"] == "queued"
    read = by_name["read"]
    assert (read["reading"], read["read_label"], read["read_by"]) == ("final", "malignant", "bob")
    assert read["read_at"] and read["report_url"].endswith(f"/scans/{studies['read'].pk}/report/")
    assert by_name["high"]["reading"] == "unread" and by_name["high"]["suspicion"] == pytest.approx(0.93)
    assert by_name["high"]["patient"]["mrn"] == studies["high"].patient.mrn and by_name["high"]["slices"] == 2


def test_an_amended_reading_shows_as_amended(alice, bob, studies):
    first = sign(studies["high"], bob, "benign")
    sign(studies["high"], alice, "malignant", amends=first)
    item = worklist(alice, reading="amended")["results"]
    assert [(i["scan"], i["read_label"], i["read_by"]) for i in item] == [
        (studies["high"].pk, "malignant", "alice")
    ]


@pytest.mark.parametrize(
    "filters,expected",
    [
        ({"state": "failed"}, ["failed"]),
        ({"state": "not_assessable"}, ["unassessable"]),
        ({"state": "succeeded"}, ["high", "middle", "low", "read"]),
        ({"reading": "final"}, ["read"]),
        ({"reading": "unread", "state": "succeeded"}, ["high", "middle", "low"]),
        ({"study_from": "2026-11-02", "study_to": "2026-11-03"}, ["unassessable", "failed"]),
    ],
)
def test_each_filter(alice, bob, studies, filters, expected):
    sign(studies["read"], bob, "malignant")
    assert [i["scan"] for i in worklist(alice, **filters)["results"]] == [studies[n].pk for n in expected]


def test_team_and_patient_filters(alice, team_a, studies):
    team_c = CareTeam.objects.create(name="Chest C")
    team_c.members.add(alice)
    other = factories.PatientFactory(team=team_c, name="Zed Other", mrn="C-1")
    theirs = study(other, alice, suspicion=0.5)
    assert [i["scan"] for i in worklist(alice, team=team_c.pk)["results"]] == [theirs.pk]
    assert len(worklist(alice, team=team_a.pk)["results"]) == len(studies)
    assert [i["scan"] for i in worklist(alice, q="zed")["results"]] == [theirs.pk]
    assert [i["scan"] for i in worklist(alice, q="C-1")["results"]] == [theirs.pk]


def test_outsiders_see_none_of_it_and_cannot_filter_by_a_foreign_team(charlie, team_a, studies):
    assert worklist(charlie)["count"] == 0
    response = api(charlie).get(reverse("api:worklist"), {"team": team_a.pk})
    assert response.status_code == 400 and "team" in response.json()["errors"]


@pytest.mark.parametrize(
    "filters,field",
    [({"state": "lost"}, "state"), ({"study_from": "soon"}, "study_from"), ({"reading": "x"}, "reading")],
)
def test_bad_filters_are_told_on_the_page_and_in_the_api(client, alice, studies, filters, field):
    response = api(alice).get(reverse("api:worklist"), filters)
    assert response.status_code == 400 and field in response.json()["errors"]
    client.force_login(alice)
    page = client.get(reverse("cases:dashboard"), filters)
    assert page.status_code == 400 and 'class="error"' in page.content.decode()


def test_the_page_lists_the_same_order_with_every_column(client, alice, bob, studies):
    sign(studies["read"], bob, "malignant")
    client.force_login(alice)
    body = client.get(reverse("cases:dashboard")).content.decode()
    positions = [
        body.index(f'href="/scans/{studies[n].pk}/"') for n in ("high", "middle", "low", "failed", "read")
    ]
    assert positions == sorted(positions)
    assert body.count('<tr class="row-unread">') == 6 and body.count('<tr class="row-final">') == 1
    assert 'status-not_assessable"' in body and 'status-failed"' in body and "2026-09-01" in body
    assert 'data-label="Team">Chest A<' in body
    assert f'href="/scans/{studies["read"].pk}/report/"' in body and "bob" in body
    for name in ("state", "reading", "team", "study_from", "study_to", "q"):
        assert f'name="{name}"' in body
    filtered = client.get(reverse("cases:dashboard"), {"state": "failed"}).content.decode()
    assert filtered.count("<tr class=") == 1


def test_reading_the_worklist_is_audited_without_its_filters(alice, studies):
    worklist(alice, q="secret name")
    entry = AuditEntry.objects.filter(object_type="worklist").latest("pk")
    assert entry.user == alice and "secret" not in entry.detail


def test_worklist_queries_do_not_grow_with_rows(client, alice, patient, django_assert_max_num_queries):
    client.force_login(alice)
    study(patient, alice, suspicion=0.2)
    with django_assert_max_num_queries(14) as few:
        client.get(reverse("cases:dashboard"))
    with django_assert_max_num_queries(10) as few_api:
        worklist(alice)
    for i in range(8):
        study(patient, alice, suspicion=i / 10)
    with django_assert_max_num_queries(len(few.captured_queries)):
        client.get(reverse("cases:dashboard"))
    with django_assert_max_num_queries(len(few_api.captured_queries)):
        worklist(alice)


def _newer_prediction(scan, **fields):
    """A second prediction of the scan, by another model version, created after the first."""
    from datetime import timedelta

    from django.utils import timezone

    from cases.models import Prediction
    from inference.models import ModelVersion

    version = ModelVersion.objects.create(name="v-next", sha256="f" * 64, weights_dir="x")
    return Prediction.objects.create(
        scan=scan, model_version=version, created_at=timezone.now() + timedelta(seconds=5), **fields
    )


def test_a_newer_result_leaves_the_signed_study_read(alice, bob, patient):
    """The reading belongs to the study: a rerun of the AI shows its own result beside the signed
    report, and the study stays read (issue 21; it used to become unread again)."""
    scan = study(patient, alice, suspicion=0.1)
    sign(scan, bob, "benign")
    calm = study(patient, alice, suspicion=0.3)
    _newer_prediction(scan, status="succeeded", label="malignant", suspicion=0.97, finding="Suspicious.")
    items = worklist(alice)["results"]
    assert [(i["scan"], i["reading"], i["ai_label"], i["read_label"]) for i in items] == [
        (calm.pk, "unread", "benign", None),
        (scan.pk, "final", "malignant", "benign"),
    ]


def test_a_queued_rerun_does_not_hide_the_result_being_read(alice, patient):
    scored = study(patient, alice, suspicion=0.97)
    calm = study(patient, alice, suspicion=0.05)
    _newer_prediction(scored, status="queued")
    items = worklist(alice)["results"]
    assert [(i["scan"], i["state"]) for i in items] == [(scored.pk, "succeeded"), (calm.pk, "succeeded")]
    assert items[0]["suspicion"] == pytest.approx(0.97)


def test_an_older_labelled_result_without_suspicion_is_not_called_unassessable(alice, patient):
    from cases.models import Prediction

    legacy = study(patient, alice, suspicion=0.9)
    Prediction.objects.filter(scan=legacy).update(suspicion=None)  # stored before the study rule
    assert worklist(alice)["results"][0]["state"] == "succeeded"
