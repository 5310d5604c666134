"""Every read of a patient's record, through pages, API and admin, is in the trail; so is an
outsider's 404 on an existing object. Each audited request costs one query for its entries."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from .conftest import entries, only_entry

PAGE_READS = [
    ("cases:patient_detail", "patient", "history"),
    ("cases:patient_edit", "patient", "patient"),
    ("cases:scan_detail", "scan", "scan"),
    ("cases:prediction_detail", "prediction", "prediction"),
    ("cases:slice_image", "slice", "slice"),
    ("cases:slice_thumbnail", "slice", "thumbnail"),
    ("cases:slice_result_heatmap", "slice_result", "heatmap"),
]
API_READS = [
    ("api:patient-detail", "patient", "patient"),
    ("api:patient-history", "patient", "history"),
    ("api:scan-detail", "scan", "scan"),
    ("api:prediction-detail", "prediction", "prediction"),
    ("api:slice-file", "slice", "slice"),
    ("api:slice-thumbnail", "slice", "thumbnail"),
    ("api:heatmap", "slice_result", "heatmap"),
]


def _audit_queries(captured: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if "audit_auditentry" in q["sql"]]


@pytest.mark.parametrize(("url_name", "kind", "object_type"), PAGE_READS)
def test_page_read_is_recorded_with_one_query(client, alice, objects, patient, url_name, kind, object_type):
    client.force_login(alice)
    target = objects[kind]
    with CaptureQueriesContext(connection) as captured:
        response = client.get(reverse(url_name, args=[target.pk]), REMOTE_ADDR="10.1.2.3")
    assert response.status_code == 200
    entry = only_entry(action="read", object_type=object_type)
    assert (entry.user, entry.username, entry.channel) == (alice, "alice", "page")
    assert (entry.object_id, entry.patient_id, entry.outcome) == (target.pk, patient.pk, "ok")
    assert entry.client_address == "10.1.2.3"
    assert len(_audit_queries(captured)) == 1


@pytest.mark.parametrize(("url_name", "kind", "object_type"), API_READS)
def test_api_read_is_recorded_with_one_query(api_as, alice, objects, patient, url_name, kind, object_type):
    client = api_as(alice)
    target = objects[kind]
    with CaptureQueriesContext(connection) as captured:
        response = client.get(reverse(url_name, args=[target.pk]))
    assert response.status_code == 200
    entry = only_entry(action="read", object_type=object_type)
    assert (entry.user, entry.channel, entry.object_id, entry.patient_id) == (
        alice,
        "api",
        target.pk,
        patient.pk,
    )
    assert len(_audit_queries(captured)) == 1


def test_lists_are_recorded_without_the_search_text(client, api_as, alice, patient):
    client.force_login(alice)
    client.get(reverse("cases:patient_list"), {"q": patient.name})
    api_as(alice).get(reverse("api:patient-list"), {"q": patient.mrn})
    client.get(reverse("cases:dashboard"))
    lists = entries(action="read", object_type__in=["patient_list", "worklist"])
    assert [(e.object_type, e.channel) for e in lists] == [
        ("patient_list", "page"),
        ("patient_list", "api"),
        ("worklist", "page"),
    ]
    text = " ".join(f"{e.detail} {e.changes}" for e in lists)
    assert patient.name not in text and patient.mrn not in text


def test_admin_read_of_a_record_is_recorded(client, admin_user, objects, patient):
    client.force_login(admin_user)
    for kind, model in [("patient", "patient"), ("scan", "scan"), ("prediction", "prediction")]:
        response = client.get(reverse(f"admin:cases_{model}_change", args=[objects[kind].pk]))
        assert response.status_code == 200
        entry = only_entry(action="read", object_type=model)
        assert (entry.user, entry.channel, entry.patient_id) == (admin_user, "admin", patient.pk)


@pytest.mark.parametrize(("url_name", "kind", "object_type"), PAGE_READS)
def test_outsider_404_on_a_page_is_recorded_as_refused(
    client, charlie, objects, patient, url_name, kind, object_type
):
    client.force_login(charlie)
    target = objects[kind]
    assert client.get(reverse(url_name, args=[target.pk])).status_code == 404
    entry = only_entry(action="refused")
    model = "sliceresult" if kind == "slice_result" else kind
    assert (entry.user, entry.object_type, entry.object_id) == (charlie, model, target.pk)
    assert (entry.patient_id, entry.outcome, entry.channel) == (patient.pk, "refused", "page")
    assert not entries(action="read")


@pytest.mark.parametrize(("url_name", "kind", "object_type"), API_READS)
def test_outsider_404_in_the_api_is_recorded_as_refused(
    api_as, charlie, objects, patient, url_name, kind, object_type
):
    assert api_as(charlie).get(reverse(url_name, args=[objects[kind].pk])).status_code == 404
    entry = only_entry(action="refused")
    assert (entry.user, entry.patient_id, entry.channel) == (charlie, patient.pk, "api")


def test_a_missing_object_is_a_plain_404_not_a_refusal(client, alice, objects):
    client.force_login(alice)
    assert client.get(reverse("cases:scan_detail", args=[987654])).status_code == 404
    assert not entries(action="refused")


def test_admins_see_the_patient_access_log_link_and_clinicians_do_not(
    client, alice, admin_user, patient, team_a
):
    team_a.members.add(admin_user)
    log_url = reverse("admin:audit_auditentry_changelist") + f"?patient_id={patient.pk}"
    client.force_login(admin_user)
    assert log_url in client.get(patient.get_absolute_url()).content.decode()
    client.get(patient.get_absolute_url())
    page = client.get(log_url)
    assert page.status_code == 200
    assert f"?patient_id={patient.pk}" in page.content.decode()
    client.force_login(alice)
    assert log_url not in client.get(patient.get_absolute_url()).content.decode()


def test_admin_lists_of_records_are_reads(client, admin_user, objects):
    client.force_login(admin_user)
    assert (
        client.get(reverse("admin:cases_patient_changelist"), {"q": objects["patient"].mrn}).status_code
        == 200
    )
    entry = only_entry(action="read", object_type="patient_list")
    assert (entry.channel, entry.detail) == ("admin", "searched")
    assert objects["patient"].mrn not in entry.detail


def test_a_colleague_missing_heatmap_is_a_404_not_a_refusal(client, alice, objects):
    from cases.models import SliceResult

    result = objects["slice_result"]
    SliceResult.objects.filter(pk=result.pk).update(heatmap="")
    client.force_login(alice)
    assert client.get(reverse("cases:slice_result_heatmap", args=[result.pk])).status_code == 404
    assert not entries(action="refused")


def test_admin_read_of_an_earlier_run_names_its_patient(client, admin_user, alice, prediction, patient):
    from cases import services
    from cases.models import Prediction, PredictionRun

    Prediction.objects.filter(pk=prediction.pk).update(status="failed", error="boom")
    prediction.refresh_from_db()
    services.prediction_rerun(prediction=prediction, requested_by=alice)
    run = PredictionRun.objects.get()
    client.force_login(admin_user)
    assert client.get(reverse("admin:cases_predictionrun_change", args=[run.pk])).status_code == 200
    assert only_entry(action="read", object_type="predictionrun").patient_id == patient.pk


def test_audit_api_needs_the_audit_view_permission_not_just_staff(alice):
    from rest_framework.test import APIClient

    alice.is_staff = True
    alice.save()
    client = APIClient()
    client.force_authenticate(alice)
    assert client.get(reverse("api:audit")).status_code == 403


def test_the_status_poll_is_a_read_naming_each_patient_with_one_query(
    client, alice, charlie, team_a, patient, prediction, django_capture_on_commit_callbacks
):
    from cases import services
    from tests import factories
    from tests.conftest import image_bytes, upload

    other = factories.PatientFactory.create(team=team_a, created_by=alice)
    with django_capture_on_commit_callbacks(execute=False):
        second = services.scan_upload(
            patient=other, files=[upload("c.png", image_bytes())], uploaded_by=alice
        ).predictions.get()
    url = reverse("cases:prediction_status") + f"?ids={prediction.pk},{second.pk}"

    client.force_login(alice)
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, REMOTE_ADDR="10.1.2.3")

    assert set(response.json()["predictions"]) == {str(prediction.pk), str(second.pk)}
    reads = entries(action="read", object_type="prediction_status")
    assert {(e.object_id, e.patient_id) for e in reads} == {
        (prediction.pk, patient.pk),
        (second.pk, other.pk),
    }
    assert {(e.user, e.channel, e.client_address) for e in reads} == {(alice, "page", "10.1.2.3")}
    assert len(_audit_queries(captured)) == 1

    client.force_login(charlie)  # an outsider is told nothing, and nothing is read
    assert client.get(url).json() == {"predictions": {}}
    assert len(entries(action="read", object_type="prediction_status")) == 2
