"""Nothing clinical is erased by the portal, and nobody edits or deletes the audit trail."""

import csv
import io
import time

import pytest
from django.db import connection, transaction
from django.db.models import ProtectedError, QuerySet
from django.urls import reverse
from rest_framework.test import APIClient

from audit import trail
from audit.models import AppendOnlyError, AuditEntry
from cases import services
from cases.models import Prediction, Review
from tests.conftest import image_bytes, upload

RECORD_MODELS = ["patient", "scan", "slice", "prediction", "sliceresult", "review", "predictionrun"]


@pytest.fixture
def review(slice_result, alice):
    prediction = Prediction.objects.get(pk=slice_result.prediction_id)  # the fixture finished it
    return services.review_submit(prediction=prediction, reviewer=alice, verdict="agree")


@pytest.fixture
def records(objects, review):
    return {**objects, "sliceresult": objects["slice_result"], "review": review}


@pytest.mark.parametrize("model", ["patient", "scan", "slice", "prediction", "sliceresult", "review"])
def test_admin_cannot_delete_or_add_a_clinical_record(client, admin_user, records, model):
    client.force_login(admin_user)
    target = records[model]
    assert client.get(reverse(f"admin:cases_{model}_delete", args=[target.pk])).status_code == 403
    assert (
        client.post(reverse(f"admin:cases_{model}_delete", args=[target.pk]), {"post": "yes"}).status_code
        == 403
    )
    assert client.get(reverse(f"admin:cases_{model}_add")).status_code == 403
    changelist = client.get(reverse(f"admin:cases_{model}_changelist"))
    assert "delete_selected" not in changelist.content.decode()
    assert type(target).objects.filter(pk=target.pk).exists()


def test_admin_shows_clinical_fields_read_only(client, admin_user, records):
    client.force_login(admin_user)
    patient, scan = records["patient"], records["scan"]
    form = client.get(reverse("admin:cases_patient_change", args=[patient.pk])).context["adminform"].form
    assert not {"mrn", "name", "birth_date", "team", "sex"} & set(form.fields)
    response = client.post(reverse("admin:cases_scan_change", args=[scan.pk]), {"study_date": "1999-01-01"})
    scan.refresh_from_db()
    assert response.status_code in (200, 302, 403) and str(scan.study_date) != "1999-01-01"


def test_users_are_deactivated_never_deleted(client, admin_user, alice):
    client.force_login(admin_user)
    assert client.get(reverse("admin:auth_user_delete", args=[alice.pk])).status_code == 403
    assert "delete_selected" not in client.get(reverse("admin:auth_user_changelist")).content.decode()


def test_deleting_a_user_with_records_is_refused_so_attribution_stays(alice, scan):
    with pytest.raises(ProtectedError):
        alice.delete()
    scan.refresh_from_db()
    assert scan.uploaded_by == alice


def test_a_patient_with_scans_cannot_be_deleted_by_a_cascade(records):
    with pytest.raises(ProtectedError):
        records["patient"].delete()
    with pytest.raises(ProtectedError):
        records["slice"].delete()


def test_the_api_has_no_delete(api_as, alice, records):
    client = api_as(alice)
    for url in [
        reverse("api:patient-detail", args=[records["patient"].pk]),
        reverse("api:scan-detail", args=[records["scan"].pk]),
        reverse("api:prediction-detail", args=[records["prediction"].pk]),
    ]:
        assert client.delete(url).status_code == 405


def test_audit_entries_cannot_be_changed_or_deleted_through_the_orm(alice):
    entry = trail.record(trail.Action.LOGIN, user=alice)
    entry.detail = "tampered"
    with pytest.raises(AppendOnlyError):
        entry.save()
    with pytest.raises(AppendOnlyError):
        entry.delete()
    with pytest.raises(AppendOnlyError):
        AuditEntry.objects.filter(pk=entry.pk).update(detail="tampered")
    with pytest.raises(AppendOnlyError):
        AuditEntry.objects.all().delete()
    assert AuditEntry.objects.get(pk=entry.pk).detail == ""


def _forged(entry: AuditEntry) -> AuditEntry:
    """A new instance carrying an existing entry's id: what `save()` would write over it."""
    return AuditEntry(pk=entry.pk, at=entry.at, channel="system", action="login", detail="tampered")


OVERWRITES = {
    "save() of another instance with its id": lambda entry: _forged(entry).save(),
    "save(force_update=True)": lambda entry: _forged(entry).save(force_update=True),
    "save(update_fields=...)": lambda entry: _forged(entry).save(update_fields=["detail"]),
    "save_base()": lambda entry: _forged(entry).save_base(),
    "bulk_update()": lambda entry: AuditEntry.objects.bulk_update([_forged(entry)], ["detail"]),
    "bulk_create(update_conflicts=True)": lambda entry: AuditEntry.objects.bulk_create(
        [_forged(entry)], update_conflicts=True, unique_fields=["id"], update_fields=["detail"]
    ),
    "update_or_create()": lambda entry: AuditEntry.objects.update_or_create(
        pk=entry.pk, defaults={"detail": "tampered"}
    ),
    "QuerySet._update()": lambda entry: AuditEntry.objects.filter(pk=entry.pk)._update(
        [(AuditEntry._meta.get_field("detail"), None, "tampered")]
    ),
    "QuerySet._raw_delete()": lambda entry: AuditEntry.objects.filter(pk=entry.pk)._raw_delete("default"),
    # A plain QuerySet skips the model's guarded one: the database's triggers refuse it.
    "plain QuerySet.update()": lambda entry: (
        QuerySet[AuditEntry](AuditEntry).filter(pk=entry.pk).update(detail="tampered")
    ),
    "plain QuerySet.delete()": lambda entry: QuerySet[AuditEntry](AuditEntry).filter(pk=entry.pk).delete(),
    "plain QuerySet.bulk_update()": lambda entry: QuerySet[AuditEntry](AuditEntry).bulk_update(
        [_forged(entry)], ["detail"]
    ),
}


@pytest.mark.parametrize("overwrite", OVERWRITES.values(), ids=OVERWRITES.keys())
def test_no_orm_path_overwrites_or_removes_an_audit_entry(alice, overwrite):
    from django.db import DatabaseError

    entry = trail.record(trail.Action.LOGIN, user=alice)
    with pytest.raises((AppendOnlyError, DatabaseError)), transaction.atomic():
        overwrite(entry)
    kept = AuditEntry.objects.get(pk=entry.pk)
    assert (kept.detail, kept.user, kept.channel) == ("", alice, entry.channel)
    assert AuditEntry.objects.count() == 1


def test_a_new_entry_still_gets_an_id_of_its_own(alice):
    first = trail.record(trail.Action.LOGIN, user=alice)
    second = AuditEntry(channel="system", action="logout")
    second.save()
    assert second.pk and second.pk != first.pk and AuditEntry.objects.count() == 2


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_auditentry SET detail = 'x'",
        "DELETE FROM audit_auditentry",
        "INSERT INTO audit_auditentry (id, at, username, channel, action, object_type, outcome, changes, "
        "detail) SELECT id, at, username, channel, action, object_type, outcome, changes, 'x' "
        "FROM audit_auditentry WHERE true ON CONFLICT (id) DO UPDATE SET detail = 'x'",
    ],
    ids=["update", "delete", "upsert"],
)
def test_the_database_refuses_update_and_delete_of_audit_entries(alice, sql):
    """On SQLite and PostgreSQL alike: a trigger, whatever code (or person) sends the SQL."""
    from django.db import DatabaseError

    trail.record(trail.Action.LOGIN, user=alice)
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql)
    assert AuditEntry.objects.filter(detail="").exists()


def test_admin_has_no_add_change_or_delete_for_audit_entries(client, admin_user, alice):
    entry = trail.record(trail.Action.LOGIN, user=alice)
    client.force_login(admin_user)
    assert client.get(reverse("admin:audit_auditentry_add")).status_code == 403
    assert client.get(reverse("admin:audit_auditentry_delete", args=[entry.pk])).status_code == 403
    view = client.get(reverse("admin:audit_auditentry_change", args=[entry.pk]))
    assert view.status_code == 200 and not view.context["adminform"].form.fields  # view only
    client.post(reverse("admin:audit_auditentry_change", args=[entry.pk]), {"detail": "tampered"})
    assert AuditEntry.objects.get(pk=entry.pk).detail == ""


def test_admin_filters_the_trail_and_exports_csv(client, admin_user, alice, bob, patient):
    trail.record(
        trail.Action.CHANGE,
        object_type="patient",
        object_id=patient.pk,
        patient_id=patient.pk,
        user=alice,
        detail='=HYPERLINK("http://evil")',
    )
    trail.record(trail.Action.LOGIN, user=bob)
    client.force_login(admin_user)
    listing = client.get(reverse("admin:audit_auditentry_changelist"), {"patient_id": patient.pk})
    assert listing.status_code == 200
    assert [e.username for e in listing.context["cl"].result_list] == ["alice"]
    ids = list(AuditEntry.objects.filter(username__in=["alice", "bob"]).values_list("pk", flat=True))
    response = client.post(
        reverse("admin:audit_auditentry_changelist"), {"action": "export_csv", "_selected_action": ids}
    )
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [(r["username"], r["action"]) for r in rows] == [("alice", "change"), ("bob", "login")]
    assert rows[0]["detail"].startswith("'=")  # a spreadsheet formula is neutralised


def test_audit_api_is_for_admins_only(api_as, alice, admin_user, patient):
    assert api_as(alice).get(reverse("api:audit")).status_code == 403
    assert APIClient().get(reverse("api:audit")).status_code == 401
    assert api_as(admin_user).post(reverse("api:audit"), {}).status_code == 405


def test_audit_api_filters_and_pages(api_as, admin_user, alice, bob, patient):
    for _ in range(30):
        trail.record(
            trail.Action.READ, object_type="patient", object_id=patient.pk, patient_id=patient.pk, user=alice
        )
    trail.record(trail.Action.LOGIN, user=bob)
    client = api_as(admin_user)
    page = client.get(reverse("api:audit"), {"patient": patient.pk, "action": "read"}).json()
    assert page["count"] == 30 and len(page["results"]) == 25 and page["next"]
    assert {(r["username"], r["patient_id"]) for r in page["results"]} == {("alice", patient.pk)}
    logins = client.get(reverse("api:audit"), {"username": "bob", "action": "login"}).json()
    assert logins["count"] == 1
    later = client.get(reverse("api:audit"), {"since": "2999-01-01T00:00:00Z"}).json()
    assert later["count"] == 0
    assert client.get(reverse("api:audit"), {"since": "yesterday"}).status_code == 400


# --- reviews are immutable: a correction supersedes ----------------------------------------------


def test_a_correction_supersedes_and_both_stay_in_the_history(client, alice, bob, review, patient):
    prediction = review.prediction
    client.force_login(bob)
    response = client.post(
        reverse("cases:review_submit", args=[prediction.pk]),
        {"label": "malignant", "supersedes": review.pk, "comment": "nodule on 12"},
    )
    assert response.status_code == 302
    correction = Review.objects.get(supersedes=review)
    review.refresh_from_db()
    assert (review.label, review.verdict, review.is_current) == ("benign", "agree", False)
    assert (correction.reviewer, correction.label, correction.is_current) == (bob, "malignant", True)
    history = client.get(patient.get_absolute_url()).content.decode()
    assert f'href="#review-{review.pk}">an earlier reading' in history
    assert f'href="#review-{correction.pk}">a later reading' in history
    api = APIClient()
    api.force_authenticate(alice)
    studies = api.get(reverse("api:patient-history", args=[patient.pk])).json()["results"]
    predictions = [p for study in studies for series in study["series"] for p in series["predictions"]]
    reviews = [r for p in predictions for r in p["reviews"]]
    assert {(r["id"], r["supersedes"], r["superseded_by"]) for r in reviews} == {
        (review.pk, None, correction.pk),
        (correction.pk, review.pk, None),
    }


def test_a_second_review_without_supersedes_is_refused(alice, review):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="correct your review"):
        services.review_submit(prediction=review.prediction, reviewer=alice, verdict="agree")


def test_a_corrected_review_cannot_be_corrected_again(alice, bob, review):
    from django.core.exceptions import ValidationError

    services.review_submit(
        prediction=review.prediction, reviewer=bob, verdict="disagree", label="normal", supersedes=review.pk
    )
    with pytest.raises(ValidationError, match="corrected already"):
        services.review_submit(
            prediction=review.prediction,
            reviewer=alice,
            verdict="disagree",
            label="normal",
            supersedes=review.pk,
        )


def test_a_review_of_another_prediction_cannot_be_superseded(
    api_as, alice, patient, review, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        other_scan = services.scan_upload(
            patient=patient, files=[upload("c.png", image_bytes())], uploaded_by=alice
        )
    other = other_scan.predictions.get()
    Prediction.objects.filter(pk=other.pk).update(status="succeeded", label="normal", finding="Normal.")
    response = api_as(alice).post(
        reverse("api:prediction-reviews", args=[other.pk]),
        {"verdict": "agree", "supersedes": review.pk},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["errors"]["supersedes"] == [f"Review {review.pk} is not a review of this study."]
    assert not Review.objects.filter(prediction=other).exists()


@pytest.mark.django_db(transaction=True)
def test_flush_still_empties_a_test_database_and_the_guard_stays(alice):
    """Django's test flush empties tables with DELETE on SQLite (TRUNCATE on PostgreSQL)."""
    from django.core.management import call_command
    from django.db import DatabaseError

    trail.record(trail.Action.LOGIN, user=alice)
    call_command("flush", interactive=False, verbosity=0)
    assert not AuditEntry.objects.exists()
    trail.record(trail.Action.LOGIN, username="after the flush")
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("DELETE FROM audit_auditentry")
    assert AuditEntry.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_flush_on_postgresql_is_tried_again_when_a_writer_deadlocks_it(alice):
    """A worker still storing a result can deadlock the flush's TRUNCATE; the flush tries again."""
    import threading

    import psycopg
    from django.core.management import call_command
    from django.core.management.color import no_style
    from django.core.management.sql import sql_flush

    if connection.vendor != "postgresql":
        pytest.skip("SQLite's flush takes one database lock: it cannot deadlock")
    statement = sql_flush(no_style(), connection)[0]
    tables = [
        name.strip(' "')
        for name in statement.removeprefix("TRUNCATE ").split(" RESTART")[0].rstrip(";").split(",")
    ]
    first, last = tables[0], tables[-1]
    params = connection.get_connection_params()
    writer = psycopg.connect(
        **{key: params[key] for key in ("dbname", "user", "host", "port") if key in params}
    )
    outcome: dict[str, object] = {}

    def hold_last_then_want_first() -> None:
        # TRUNCATE holds `first` and waits for `last`; asking for `first` now closes the cycle.
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                waiting = writer.execute(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted AND pid <> pg_backend_pid()"
                ).fetchone()
                if waiting and waiting[0]:
                    break
                time.sleep(0.05)
            writer.execute(f'LOCK TABLE "{first}" IN ROW EXCLUSIVE MODE')
            writer.commit()
            outcome["writer"] = "committed"
        except psycopg.Error as exc:  # the server chose the writer as the victim
            writer.rollback()
            outcome["writer"] = exc.sqlstate

    writer.execute(f'LOCK TABLE "{last}" IN ROW EXCLUSIVE MODE')  # a transaction still writing
    thread = threading.Thread(target=hold_last_then_want_first)
    thread.start()
    try:
        call_command("flush", interactive=False, verbosity=0)
    finally:
        thread.join(timeout=60)
        writer.close()

    # The writer went on, so the server aborted the TRUNCATE: only the second try emptied the tables.
    assert outcome == {"writer": "committed"}
    assert not AuditEntry.objects.exists() and not type(alice).objects.exists()
