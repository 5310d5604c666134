"""Service rules that need no worker: claiming, re-running, and refusing without an active model."""

import pytest
from django.core.exceptions import ValidationError

from cases import services
from cases.models import Patient, Prediction
from cases.services import prediction_runs
from inference.models import ModelVersion
from tests.conftest import image_bytes, upload


def test_a_redelivered_message_takes_over_its_own_run_but_no_other(prediction):
    first = prediction_runs._prediction_claim(prediction.pk, "task-a")
    assert first is not None and first.attempts == 1
    assert (
        prediction_runs._prediction_claim(prediction.pk, "task-b") is None
    )  # another message: nothing to do
    again = prediction_runs._prediction_claim(prediction.pk, "task-a")  # the same message, its worker died
    assert again is not None and again.attempts == 2
    assert first.started_at is not None and again.started_at is not None
    assert again.started_at >= first.started_at


def test_a_superseded_run_cannot_fail_or_release_the_new_one(prediction):
    old = prediction_runs._prediction_claim(prediction.pk, "task-a")
    assert old is not None
    prediction_runs._prediction_claim(prediction.pk, "task-a")  # redelivered: a new run took over
    prediction_runs._prediction_fail(old, "the old run's error")
    prediction_runs._prediction_release(old)
    current = Prediction.objects.get(pk=prediction.pk)
    assert current.status == "running" and current.error == ""


def test_claims_stop_after_the_maximum_attempts(prediction, settings):
    settings.PREDICTION_MAX_ATTEMPTS = 2
    for _ in range(2):
        assert prediction_runs._prediction_claim(prediction.pk, "task-a") is not None
    assert prediction_runs._prediction_claim(prediction.pk, "task-a") is None
    failed = Prediction.objects.get(pk=prediction.pk)
    assert failed.status == "failed" and failed.error == "Gave up after 2 attempts."


def test_rerun_refuses_a_prediction_that_is_neither_failed_nor_stale(prediction):
    with pytest.raises(services.PredictionConflict, match="failed or stale"):
        services.prediction_rerun(prediction=prediction, requested_by=None)


def test_a_second_rerun_of_the_same_state_is_refused(prediction, django_capture_on_commit_callbacks):
    Prediction.objects.filter(pk=prediction.pk).update(status="failed")
    stale_copy = Prediction.objects.get(pk=prediction.pk)
    with django_capture_on_commit_callbacks(execute=False) as sent:
        services.prediction_rerun(prediction=Prediction.objects.get(pk=prediction.pk), requested_by=None)
        Prediction.objects.filter(pk=prediction.pk).update(status="failed")  # failed again meanwhile
        with pytest.raises(services.PredictionConflict, match="changed meanwhile"):
            services.prediction_rerun(prediction=stale_copy, requested_by=None)
    assert len(sent) == 1


def test_without_an_active_model_uploads_are_refused_clearly(patient, alice, client):
    ModelVersion.objects.all().delete()
    from inference.services import model_version_active

    model_version_active()  # registers and activates the shipped weights
    ModelVersion.objects.update(is_active=False)
    with pytest.raises(ValidationError, match="No model version is active"):
        services.scan_upload(patient=patient, files=[upload("a.png", image_bytes())], uploaded_by=alice)
    client.force_login(alice)
    response = client.post(
        f"/patients/{patient.pk}/scans/new/",
        {"files": [upload("a.png", image_bytes())]},
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 400 and "No model version is active" in str(response.json())


def test_scan_page_works_without_an_active_model(client, alice, scan):
    ModelVersion.objects.update(is_active=False)
    client.force_login(alice)
    response = client.get(scan.get_absolute_url())
    assert response.status_code == 200 and "Classify with model" not in response.content.decode()


def test_patient_search_ignores_nul_bytes(client, alice, patient):
    client.force_login(alice)
    response = client.get("/patients/", {"q": "\x00" + patient.mrn})
    assert response.status_code == 200 and patient.name in response.content.decode()


def test_a_duplicate_mrn_race_becomes_a_validation_error(patient, monkeypatch):
    monkeypatch.setattr(Patient, "full_clean", lambda self, *a, **k: None)  # both requests passed the check
    with pytest.raises(ValidationError, match="already exists"):
        services.patient_create(
            team=patient.team, mrn=patient.mrn, name="Twin", birth_date=patient.birth_date, created_by=None
        )


def test_changed_weights_fail_the_prediction_with_a_clear_reason(prediction, tmp_path):
    """The hashes a version recorded are checked on every load: tampered weights never classify."""
    import shutil

    from inference.artifacts import card_members, read_card

    # The version's own folder, on a disk where someone changed a weights file by one byte.
    folder = tmp_path / "weights"
    shutil.copytree(prediction.model_version.weights_path, folder)
    ModelVersion.objects.filter(pk=prediction.model_version_id).update(weights_dir=str(folder))
    weights = folder / next(iter(card_members(read_card(folder))))
    weights.write_bytes(weights.read_bytes() + b"\x00")

    services.prediction_execute(prediction_id=prediction.pk, task_id="task-a")

    failed = Prediction.objects.get(pk=prediction.pk)
    assert failed.status == Prediction.Status.FAILED
    assert "does not match" in failed.error and "refusing to classify" in failed.error
    assert not failed.slice_results.exists() and failed.weights_sha256 == {}
