"""The transactional outbox: an event exists if and only if its change committed, and reaches
every integration (webhooks, the PACS export) exactly once, whoever relays it, however often,
and after a relay that died half way."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from unittest import mock

import pytest
from django.db import connection, transaction
from django.db.models import F

import outbox.services
from cases import services
from cases.events import PREDICTION_SUCCEEDED, publish
from outbox import registry
from outbox.models import OutboxEvent
from outbox.services import event_dispatch, events_sweep
from pacs.models import ResultExport
from tests.conftest import image_bytes, upload
from webhooks.models import WebhookDelivery, WebhookEvent


def published(prediction) -> OutboxEvent:
    """prediction.succeeded, as the worker's store step publishes it, committed, and the dispatch
    at its commit lost (the process died right after the commit)."""
    with mock.patch.object(outbox.services, "event_dispatch"), transaction.atomic():
        publish(PREDICTION_SUCCEEDED, team=prediction.scan.patient.team, subject=prediction)
    return OutboxEvent.objects.get()


def handed_on() -> tuple[int, int, int]:
    """(webhook events, webhook deliveries, SR exports): what the integrations made of it."""
    return WebhookEvent.objects.count(), WebhookDelivery.objects.count(), ResultExport.objects.count()


def overdue() -> None:
    """Time passes: every waiting event is old enough for the sweep and due."""
    OutboxEvent.objects.update(
        created_at=F("created_at") - timedelta(minutes=1),
        next_attempt_at=F("next_attempt_at") - timedelta(hours=2),
    )


def subscriber(monkeypatch, topic: str, name: str, handler) -> None:
    monkeypatch.setitem(registry._handlers, topic, {**registry._handlers.get(topic, {}), name: handler})


# --- written with the change --------------------------------------------------------------------


def test_an_event_of_a_change_that_rolls_back_leaves_nothing(
    endpoint, patient, alice, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
        with transaction.atomic():
            services.scan_upload(patient=patient, files=[upload("a.png", image_bytes())], uploaded_by=alice)
            assert OutboxEvent.objects.filter(topic="study.received").exists()
            raise RuntimeError("the change fails after its event was written")

    assert not OutboxEvent.objects.exists()
    assert handed_on() == (0, 0, 0)


def test_a_committed_upload_is_dispatched_as_it_commits(
    endpoint, patient, alice, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        scan = services.scan_upload(
            patient=patient, files=[upload("a.png", image_bytes())], uploaded_by=alice
        )
        assert OutboxEvent.objects.get().dispatched_at is None
        assert handed_on() == (0, 0, 0)

    event = OutboxEvent.objects.get()
    assert event.dispatched_at is not None and event.handed_to == ["webhooks"]
    assert handed_on() == (1, 1, 0)  # an uploaded image has no SR
    assert (event.topic, event.team_id, event.subject_type, event.subject_id) == (
        "study.received",
        patient.team_id,
        "cases.scan",
        scan.pk,
    )
    # Ids only: nothing that names the patient.
    assert event.payload == {"scan": scan.pk, "study": scan.study_id, "patient": patient.pk}
    assert patient.mrn not in json.dumps(event.payload) and patient.name not in json.dumps(event.payload)


def test_publish_refuses_an_unknown_event_or_the_wrong_subject(dicom_prediction):
    team = dicom_prediction.scan.patient.team
    with pytest.raises(ValueError):
        publish("prediction.exploded", team=team, subject=dicom_prediction)
    with pytest.raises(ValueError):
        publish("study.received", team=team, subject=dicom_prediction)


# --- handed on exactly once ---------------------------------------------------------------------


def test_a_committed_event_reaches_webhooks_and_the_pacs_export_once(endpoint, dicom_prediction):
    event = published(dicom_prediction)

    assert event_dispatch(event.pk) is True
    assert event_dispatch(event.pk) is False  # a second relay
    assert events_sweep() == 0

    assert handed_on() == (1, 1, 1)
    event.refresh_from_db()
    assert event.dispatched_at is not None and event.attempts == 1
    assert sorted(event.handed_to) == ["pacs.result_export", "webhooks"]
    webhook = WebhookEvent.objects.get()
    # The webhook-id is the outbox event's, and the timestamp when it happened, not when relayed.
    assert webhook.event_id == f"evt_{event.uuid.hex}" and webhook.type == "prediction.succeeded"
    assert webhook.payload["timestamp"] == event.created_at.isoformat().replace("+00:00", "Z")
    assert webhook.payload["data"]["prediction"]["id"] == dicom_prediction.pk
    assert ResultExport.objects.get().prediction == dicom_prediction


@pytest.mark.django_db(transaction=True)
def test_two_relays_at_once_hand_an_event_on_once(endpoint, dicom_prediction, monkeypatch):
    event = published(dicom_prediction)
    inside = threading.Event()

    def slow(event: OutboxEvent) -> None:  # holds the first relay inside its transaction
        inside.set()
        time.sleep(1)

    subscriber(monkeypatch, PREDICTION_SUCCEEDED, "test.slow", slow)
    finished: dict[str, bool] = {}
    failures: list[BaseException] = []

    def relay(name: str) -> None:
        try:
            finished[name] = event_dispatch(event.pk)
        except BaseException as exc:  # told to the test, not lost in the thread
            failures.append(exc)
        finally:
            connection.close()

    first = threading.Thread(target=relay, args=("first",))
    first.start()
    assert inside.wait(30)
    second = threading.Thread(target=relay, args=("second",))
    second.start()
    first.join(60)
    second.join(60)

    assert failures == []
    assert finished == {"first": True, "second": False}
    assert handed_on() == (1, 1, 1)
    event.refresh_from_db()
    assert (event.attempts, event.last_error) == (1, "") and event.dispatched_at is not None


@pytest.mark.django_db(transaction=True)
def test_two_sweeps_at_once_hand_an_event_on_once(endpoint, dicom_prediction):
    published(dicom_prediction)
    overdue()
    results: list[int] = []

    def sweep() -> None:
        try:
            results.append(events_sweep())
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sorted(results) == [0, 1]
    assert handed_on() == (1, 1, 1)
    event = OutboxEvent.objects.get()
    assert (event.attempts, event.last_error) == (1, "") and event.dispatched_at is not None


# --- a relay that died, an integration that fails ------------------------------------------------


def test_a_relay_killed_before_hand_off_leaves_the_event_and_the_sweep_delivers_it_once(
    endpoint, dicom_prediction, monkeypatch
):
    event = published(dicom_prediction)  # its on-commit dispatch never ran: the process died

    def killed(event: OutboxEvent) -> None:  # after webhooks and the export wrote their rows
        raise SystemExit("worker killed")  # not an Exception: nothing catches it, as a SIGKILL

    subscriber(monkeypatch, PREDICTION_SUCCEEDED, "test.killed", killed)
    with pytest.raises(SystemExit):
        event_dispatch(event.pk)

    assert handed_on() == (0, 0, 0)  # undone with the relay's transaction
    event.refresh_from_db()
    assert event.dispatched_at is None and event.handed_to == []

    monkeypatch.undo()  # the worker restarts with the real subscribers
    assert events_sweep() == 0  # a moment old: left to the committing process
    overdue()
    assert events_sweep() == 1
    assert events_sweep() == 0
    assert handed_on() == (1, 1, 1)


def test_a_failing_integration_does_not_hold_up_the_others(endpoint, dicom_prediction, monkeypatch):
    event = published(dicom_prediction)

    def broken(event: OutboxEvent) -> None:
        raise RuntimeError("export bug")

    subscriber(monkeypatch, PREDICTION_SUCCEEDED, "pacs.result_export", broken)
    assert event_dispatch(event.pk) is False

    assert handed_on() == (1, 1, 0)  # webhooks have theirs
    event.refresh_from_db()
    assert event.dispatched_at is None and event.handed_to == ["webhooks"]
    assert "pacs.result_export: RuntimeError: export bug" in event.last_error
    event.created_at -= timedelta(minutes=1)
    event.save()
    assert events_sweep() == 0  # backing off

    monkeypatch.undo()  # fixed
    overdue()
    assert events_sweep() == 1
    assert handed_on() == (1, 1, 1)  # the export now; webhooks not sent twice
    event.refresh_from_db()
    assert event.dispatched_at is not None and event.attempts == 2 and event.last_error == ""


def test_an_event_whose_subject_was_purged_is_still_handed_on(endpoint, dicom_prediction):
    event = published(dicom_prediction)
    OutboxEvent.objects.filter(pk=event.pk).update(payload={**event.payload, "prediction": 10**9})

    assert event_dispatch(event.pk) is True
    assert handed_on() == (1, 1, 0)  # the link says what it was; no report of a missing result
