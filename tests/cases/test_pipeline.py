"""The upload → queue → worker → result flow with a real Celery worker process and the
configured broker (the serverless transport by default, Redis when REDIS_URL is set)."""

import io
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone
from PIL import Image

from cases import services
from cases.models import Prediction, SliceResult
from inference.preprocessing import CLASS_NAMES
from inference.services import model_version_active
from inference.training.assessability_fit import non_ct_images
from tests.conftest import dataset_slice, image_bytes, upload, wait_for_prediction

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_worker_classifies_an_uploaded_scan(worker, patient, alice):
    malignant = dataset_slice("malignant/Malignant case (1).jpg")
    normal = dataset_slice("normal/Normal case (1).jpg")
    photo = io.BytesIO()
    non_ct_images()["colour photo"].save(photo, format="JPEG")
    scan = services.scan_upload(
        patient=patient,
        files=[
            upload("n.jpg", normal, "image/jpeg"),
            upload("m.jpg", malignant, "image/jpeg"),
            upload("holiday.jpg", photo.getvalue(), "image/jpeg"),
        ],
        uploaded_by=alice,
    )
    prediction = wait_for_prediction(scan.predictions.get().pk, worker=worker)

    assert prediction.status == Prediction.Status.SUCCEEDED, f"{prediction.error}\n{worker.logs()}"
    assert prediction.attempts == 1
    assert prediction.model_version == model_version_active()
    assert prediction.weights_sha256 == prediction.model_version.files
    assert prediction.started_at >= prediction.queued_at and prediction.finished_at >= prediction.started_at
    assert prediction.inference_seconds > 0
    normal_result, malignant_result, photo_result = prediction.slice_results.order_by("slice__position")
    for result in (normal_result, malignant_result):
        assert result.assessable and sum(result.probabilities.values()) == pytest.approx(1, abs=1e-4)
        # An RGBA overlay in the slice's own geometry, for the viewer to lay over it.
        with default_storage.open(result.heatmap.name) as stored, Image.open(stored) as overlay:
            assert overlay.format == "PNG" and overlay.mode == "RGBA"
            assert overlay.size == (result.slice.width, result.slice.height)
    # The photo is not assessable: a reason, no label, no heatmap, and it does not count.
    assert not photo_result.assessable and "colour" in photo_result.reason
    assert photo_result.label == "" and photo_result.probabilities is None and not photo_result.heatmap
    assert prediction.not_assessable_slices == 1
    mean = {k: (normal_result.probabilities[k] + malignant_result.probabilities[k]) / 2 for k in CLASS_NAMES}
    assert prediction.probabilities == pytest.approx(mean, abs=1e-5)
    # One clearly malignant slice flags the study, whatever the mean says.
    assert prediction.label == "malignant" and prediction.suspicion > 0.5
    assert prediction.suspicious_slices >= 1 and "malignancy" in prediction.finding
    assert prediction.most_suspicious_first[0] == malignant_result


def test_a_redelivered_message_does_nothing_twice(worker, patient, alice):
    scan = services.scan_upload(patient=patient, files=[upload("a.png", image_bytes())], uploaded_by=alice)
    prediction = wait_for_prediction(scan.predictions.get().pk, worker=worker)
    assert prediction.status == Prediction.Status.SUCCEEDED, worker.logs()

    services.prediction_enqueue(prediction_id=prediction.pk)  # the same message again
    second = services.scan_upload(patient=patient, files=[upload("b.png", image_bytes())], uploaded_by=alice)
    wait_for_prediction(second.predictions.get().pk, worker=worker)  # the queue has moved past the duplicate

    assert SliceResult.objects.filter(prediction=prediction).count() == 1
    prediction.refresh_from_db()
    assert prediction.attempts == 1


def test_unreadable_slice_fails_with_a_reason_and_can_be_rerun(worker, patient, alice, settings):
    scan = services.scan_upload(patient=patient, files=[upload("a.png", image_bytes())], uploaded_by=alice)
    prediction = scan.predictions.get()
    wait_for_prediction(prediction.pk, worker=worker)
    # Simulate storage losing the file, then ask for a fresh run.
    Prediction.objects.filter(pk=prediction.pk).update(
        status="failed", label="", p_normal=None, p_benign=None, p_malignant=None
    )
    SliceResult.objects.filter(prediction=prediction).delete()
    default_storage.delete(scan.slices.get().image.name)
    prediction.refresh_from_db()

    services.prediction_rerun(prediction=prediction, requested_by=alice)
    failed = wait_for_prediction(prediction.pk, worker=worker)
    assert failed.status == Prediction.Status.FAILED
    assert "Slice 1 (a.png) could not be read" in failed.error
    assert str(settings.MEDIA_ROOT) not in failed.error and "/slices/" not in failed.error  # no server path


def test_sweep_resends_a_prediction_the_broker_never_delivered(worker, patient, alice, settings):
    from django.db import transaction

    # Create the record without sending the task, as if the broker was down at upload time.
    with transaction.atomic():
        scan = services.scan_upload(
            patient=patient, files=[upload("a.png", image_bytes())], uploaded_by=alice
        )
        transaction.get_connection().run_on_commit = []  # drop the pending send: the message is 'lost'
    prediction = scan.predictions.get()
    Prediction.objects.filter(pk=prediction.pk).update(queued_at=timezone.now() - timedelta(hours=1))

    assert services.predictions_sweep() == 1
    assert wait_for_prediction(prediction.pk, worker=worker).status == Prediction.Status.SUCCEEDED


def resaved_version(version, folder):
    """Another model version: the same networks saved again (other bytes, so other hashes)."""
    import json
    import shutil

    import keras

    from inference.artifacts import card_members, read_card
    from inference.services import model_version_register

    shutil.copytree(version.weights_path, folder)
    card = read_card(folder)
    for name in card_members(card):
        keras.models.load_model(folder / name, compile=False).save(folder / name)
    for entry in card.get("members") or [card.get("weights") or {}]:
        entry.pop("sha256", None)
    card["name"] = f"{version.name}-resaved"
    (folder / "card.json").write_text(json.dumps(card))
    return model_version_register(weights_dir=folder)


def test_new_model_version_keeps_the_old_result(worker, patient, alice, tmp_path):
    scan = services.scan_upload(patient=patient, files=[upload("a.png", image_bytes())], uploaded_by=alice)
    first = wait_for_prediction(scan.predictions.get().pk, worker=worker)
    assert first.status == Prediction.Status.SUCCEEDED
    old = first.model_version
    clone = resaved_version(old, tmp_path / "other-weights")

    second = services.prediction_request(scan=scan, requested_by=alice, model_version=clone)
    second = wait_for_prediction(second.pk, worker=worker)
    assert second.status == Prediction.Status.SUCCEEDED
    assert set(scan.predictions.values_list("model_version__name", flat=True)) == {old.name, clone.name}
    first.refresh_from_db()
    assert first.status == Prediction.Status.SUCCEEDED and first.slice_results.count() == 1
    with pytest.raises(services.PredictionConflict):
        services.prediction_request(scan=scan, requested_by=alice, model_version=clone)
