"""Retention: a patient's whole record goes, rows and files together, and the trail remembers."""

import io
from datetime import date, timedelta

import pytest
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from django.utils import timezone

from audit.models import AuditEntry
from cases import services
from cases.models import Patient, Prediction, PredictionRun, Review, Scan, Slice, SliceResult
from cases.services import retention
from tests import factories
from tests.conftest import image_bytes, upload


@pytest.fixture
def record(patient, alice, bob, slice_result):
    """A full record: two slices, a finished prediction with a heatmap, an earlier run, and a
    review corrected once (the correction protects the review it supersedes)."""
    prediction = Prediction.objects.get(pk=slice_result.prediction_id)
    first = services.review_submit(prediction=prediction, reviewer=alice, verdict="agree")
    services.review_submit(
        prediction=prediction, reviewer=alice, verdict="disagree", label="malignant", supersedes=first.pk
    )
    services.review_submit(prediction=prediction, reviewer=bob, verdict="agree", kind="second_opinion")
    PredictionRun.objects.create(prediction=prediction, status="failed", queued_at=timezone.now())
    return patient


@pytest.fixture
def other(alice, team_a, django_capture_on_commit_callbacks):
    """Another patient of the same team, with a scan of their own."""
    someone = factories.PatientFactory.create(team=team_a, created_by=alice)
    with django_capture_on_commit_callbacks(execute=False):
        services.scan_upload(patient=someone, files=[upload("c.png", image_bytes())], uploaded_by=alice)
    return someone


def files_of(patient) -> list[str]:
    slices = Slice.objects.filter(scan__patient=patient)
    names = [name for item in slices for name in (item.image.name, item.thumbnail.name)]
    names += (
        SliceResult.objects.filter(prediction__scan__patient=patient)
        .exclude(heatmap="")
        .values_list("heatmap", flat=True)
    )
    return names


def purge(*args: str) -> str:
    out = io.StringIO()
    call_command("purge_records", *args, stdout=out)
    return out.getvalue()


def test_dry_run_deletes_nothing(record, other):
    files = files_of(record)
    output = purge("--patient", str(record.pk))

    assert f"Would purge patient {record.pk}: 1 scans, 2 slices, 1 predictions, 1 earlier runs" in output
    assert "3 reviews, 5 files" in output and "--confirm" in output
    assert Patient.objects.filter(pk=record.pk).exists() and Review.objects.count() == 3
    assert all(default_storage.exists(name) for name in files)
    assert not AuditEntry.objects.filter(action="purge").exists()
    assert record.name not in output and record.mrn not in output


def test_confirm_deletes_the_patients_rows_and_files_only(record, other, django_capture_on_commit_callbacks):
    files, others_files = files_of(record), files_of(other)
    assert len(files) == 5
    with django_capture_on_commit_callbacks(execute=True):
        output = purge("--patient", str(record.pk), "--confirm")

    assert f"Purged patient {record.pk}" in output
    assert not Patient.objects.filter(pk=record.pk).exists()
    for model in (Scan, Slice, Prediction, SliceResult, PredictionRun, Review):
        assert not model.objects.exclude(pk__in=_ids_of(model, other)).exists(), model
    assert not any(default_storage.exists(name) for name in files)
    # The other patient is untouched.
    assert Scan.objects.filter(patient=other).count() == 1
    assert Prediction.objects.filter(scan__patient=other).count() == 1
    assert all(default_storage.exists(name) for name in others_files)


def _ids_of(model, patient) -> list[int]:
    path = {
        Scan: "patient",
        Slice: "scan__patient",
        Prediction: "scan__patient",
        SliceResult: "prediction__scan__patient",
        PredictionRun: "prediction__scan__patient",
        Review: "prediction__scan__patient",
    }[model]
    return list(model.objects.filter(**{path: patient}).values_list("pk", flat=True))


def test_purge_leaves_one_entry_and_keeps_the_patients_trail(record, django_capture_on_commit_callbacks):
    earlier = AuditEntry.objects.filter(patient_id=record.pk).count()
    assert earlier >= 4  # the upload and the three reviews
    with django_capture_on_commit_callbacks(execute=True):
        purge("--patient", str(record.pk), "--confirm")

    [entry] = AuditEntry.objects.filter(action="purge")
    assert (entry.object_type, entry.object_id, entry.patient_id) == ("patient", record.pk, record.pk)
    assert (entry.outcome, entry.channel, entry.user) == ("ok", "system", None)
    assert "1 scans, 2 slices" in entry.detail and "5 files" in entry.detail
    assert record.name not in entry.detail and record.mrn not in entry.detail
    assert AuditEntry.objects.filter(patient_id=record.pk).count() == earlier + 1


def test_files_go_only_once_the_transaction_commits(record, django_capture_on_commit_callbacks):
    files = files_of(record)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.patient_purge(patient_id=record.pk)
    assert all(default_storage.exists(name) for name in files)
    for callback in callbacks:
        callback()
    assert not any(default_storage.exists(name) for name in files)


def test_a_failed_purge_keeps_rows_and_files(record, monkeypatch):
    files = files_of(record)

    def broken(*args, **kwargs):
        raise RuntimeError("the audit trail is unavailable")

    monkeypatch.setattr(retention.trail, "record", broken)
    with pytest.raises(RuntimeError):
        services.patient_purge(patient_id=record.pk)
    assert Patient.objects.filter(pk=record.pk).exists() and Review.objects.count() == 3
    assert all(default_storage.exists(name) for name in files)


def test_before_selects_patients_by_their_newest_scan(record, other, alice, team_a):
    Scan.objects.filter(patient=record).update(study_date=date(2010, 3, 1))
    Scan.objects.filter(patient=other).update(study_date=date(2020, 1, 1))
    old_and_empty = factories.PatientFactory.create(team=team_a)
    Patient.objects.filter(pk=old_and_empty.pk).update(created_at=timezone.now() - timedelta(days=6000))
    factories.PatientFactory.create(team=team_a)  # registered today, no scans

    assert services.patients_to_purge(before=date(2015, 1, 1)) == sorted([record.pk, old_and_empty.pk])
    output = purge("--before", "2015-01-01")
    assert f"Would purge patient {record.pk}" in output and f"Would purge patient {other.pk}" not in output


def test_a_patient_with_a_recent_scan_is_kept_by_date(record, alice, django_capture_on_commit_callbacks):
    Scan.objects.filter(patient=record).update(study_date=date(2010, 3, 1))
    with django_capture_on_commit_callbacks(execute=False):
        services.scan_upload(
            patient=record, files=[upload("d.png", image_bytes())], uploaded_by=alice, study_date=date.today()
        )
    assert record.pk not in services.patients_to_purge(before=date(2015, 1, 1))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "--patient ID"),
        (("--before", "01/02/2015"), "YYYY-MM-DD"),
        (("--before", "2015-02-30"), "YYYY-MM-DD"),
        (("--patient", "999999", "--confirm"), "No patient with id 999999"),
        (("--patient", "1", "--before", "2015-01-01"), "not both"),
    ],
)
def test_unclear_selections_are_refused(record, args, message):
    with pytest.raises(CommandError, match=message):
        purge(*args)
    assert Patient.objects.filter(pk=record.pk).exists()
    assert not AuditEntry.objects.filter(action="purge").exists()
