"""Queue faults with real worker processes: nothing lost, nothing stored twice."""

import io
import os
import signal
import time

import pytest
from PIL import Image

from cases import services
from cases.models import Prediction, SliceResult
from tests.conftest import restart_worker, upload, wait_for, wait_for_prediction, worker_children

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def ct_like_png(seed: int) -> bytes:
    image = Image.effect_noise((512, 512), 40 + seed % 20).convert("L")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def long_scan(patient, alice, slices: int = 48):
    """A scan whose batch takes seconds, so that a kill lands in the middle of it."""
    files = [upload(f"s{i}.png", ct_like_png(i)) for i in range(slices)]
    return services.scan_upload(patient=patient, files=files, uploaded_by=alice)


def wait_until_running(prediction_id: int) -> None:
    wait_for(lambda: Prediction.objects.get(pk=prediction_id).status == "running", timeout=60, interval=0.05)


def test_killed_pool_process_mid_batch_is_redelivered_and_stored_once(worker, patient, alice):
    prediction = long_scan(patient, alice).predictions.get()
    wait_until_running(prediction.pk)
    time.sleep(0.5)
    children = worker_children(worker)
    assert children, worker.logs()
    for pid in children:
        os.kill(pid, signal.SIGKILL)

    final = wait_for_prediction(prediction.pk, timeout=180, worker=worker)
    assert final.status == Prediction.Status.SUCCEEDED, final.error
    assert final.attempts == 2  # the killed run, then the redelivered one
    assert SliceResult.objects.filter(prediction=final).count() == 48


def test_killed_worker_mid_batch_is_recovered_by_the_sweep_after_restart(worker, patient, alice, settings):
    prediction = long_scan(patient, alice).predictions.get()
    wait_until_running(prediction.pk)
    time.sleep(0.5)
    for pid in [*worker_children(worker), worker.process.pid]:
        os.kill(pid, signal.SIGKILL)
    worker.process.wait()
    restart_worker(worker)

    # The run was lost with its worker; once it is past the time limit the sweep re-sends it.
    settings.CELERY_TASK_TIME_LIMIT = 1
    settings.PREDICTION_LOST_GRACE = __import__("datetime").timedelta(0)
    time.sleep(1.5)
    assert services.predictions_sweep() == 1

    final = wait_for_prediction(prediction.pk, timeout=180, worker=worker)
    assert final.status == Prediction.Status.SUCCEEDED, final.error
    assert final.attempts == 2
    assert SliceResult.objects.filter(prediction=final).count() == 48


def test_a_task_that_keeps_killing_its_worker_ends_failed(worker, patient, alice, settings):
    """A poison prediction: every attempt dies with its process. Attempts are counted in the
    database, so it ends `failed` instead of looping forever."""
    settings.CELERY_TASK_TIME_LIMIT = 1
    settings.PREDICTION_LOST_GRACE = __import__("datetime").timedelta(0)
    prediction = long_scan(patient, alice).predictions.get()
    for attempt in range(1, settings.PREDICTION_MAX_ATTEMPTS + 1):
        wait_until_running(prediction.pk)
        for pid in worker_children(worker):
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: Prediction.objects.get(pk=prediction.pk).status != "running"
                 or Prediction.objects.get(pk=prediction.pk).attempts > attempt, timeout=60)
    final = wait_for_prediction(prediction.pk, timeout=120, worker=worker)
    assert final.status == Prediction.Status.FAILED
    assert f"Gave up after {settings.PREDICTION_MAX_ATTEMPTS} attempts" in final.error
    assert not SliceResult.objects.filter(prediction=final).exists()
