"""A prediction whose worker stopped heartbeating is re-sent within two minutes, not after the
hard time limit (640-700 s on the serverless broker before)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from cases import services
from cases.models import Prediction
from health.models import WorkerHeartbeat


def _running_on(prediction, worker: str, started_ago: timedelta) -> Prediction:
    Prediction.objects.filter(pk=prediction.pk).update(
        status="running", worker=worker, task_id="t-1", started_at=timezone.now() - started_ago, attempts=1
    )
    return Prediction.objects.get(pk=prediction.pk)


def test_a_run_on_a_worker_that_stopped_heartbeating_is_stale_and_resent(prediction, settings, monkeypatch):
    lost = settings.WORKER_LOST_AFTER
    assert lost + timedelta(seconds=60) <= timedelta(minutes=2)  # lost + one sweep interval
    WorkerHeartbeat.objects.create(
        hostname="celery@dead", last_seen=timezone.now() - lost - timedelta(seconds=5)
    )
    running = _running_on(prediction, "celery@dead", lost + timedelta(seconds=5))
    assert running.is_stale
    assert list(Prediction.objects.stale()) == [running]

    sent = []
    monkeypatch.setattr(
        "cases.services.predictions.prediction_enqueue", lambda *, prediction_id: sent.append(prediction_id)
    )
    assert services.predictions_sweep() == 1 and sent == [prediction.pk]
    assert Prediction.objects.get(pk=prediction.pk).status == "queued"


def test_a_rerun_is_allowed_once_the_worker_is_lost(
    prediction, alice, settings, django_capture_on_commit_callbacks
):
    running = _running_on(prediction, "celery@gone", settings.WORKER_LOST_AFTER + timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=False):
        rerun = services.prediction_rerun(prediction=running, requested_by=alice)
    assert rerun.status == "queued"


@pytest.mark.parametrize("worker", ["celery@alive", ""])
def test_a_run_on_a_live_worker_or_an_unnamed_one_is_left_alone(prediction, settings, worker):
    booted = timezone.now() - settings.WORKER_LOST_AFTER * 10
    WorkerHeartbeat.objects.create(hostname="celery@alive", last_seen=timezone.now(), booted_at=booted)
    running = _running_on(prediction, worker, settings.WORKER_LOST_AFTER * 3)
    assert not running.is_stale
    assert not Prediction.objects.stale().exists()


def test_a_run_just_started_is_not_judged_before_its_worker_could_beat(prediction):
    running = _running_on(prediction, "celery@new", timedelta(seconds=1))
    assert not running.is_stale


def test_a_worker_restarted_under_the_same_name_does_not_keep_the_lost_run_alive(prediction, settings):
    """`make run` names its one worker celery@<host> every time: a fresh boot is a different run."""
    lost = settings.WORKER_LOST_AFTER
    running = _running_on(prediction, "celery@same", lost + timedelta(seconds=5))
    WorkerHeartbeat.objects.create(hostname="celery@same", last_seen=timezone.now(), booted_at=timezone.now())
    assert running.is_stale
    assert list(Prediction.objects.stale()) == [running]
