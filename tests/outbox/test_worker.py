"""End to end with real workers: an upload's events go through the outbox, relayed on the
integrations queue, to webhook deliveries that reach the receiver; a light integrations worker
(as `make run` starts) sends them while the inference worker is still loading the model."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cases import services
from health.models import WorkerHeartbeat
from outbox.models import OutboxEvent
from tests.conftest import (
    Worker,
    dataset_slice,
    start_worker,
    stop_worker,
    upload,
    wait_for,
    wait_for_prediction,
)
from webhooks.models import WebhookDelivery

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def integrations_worker(worker, tmp_path) -> Iterator[Worker]:
    """A second worker on the integrations queue only (the later -Q and -c win)."""
    light = start_worker(
        worker.media_root, tmp_path / "integrations.log", extra_args=("-Q", "integrations", "-c", "2")
    )
    try:
        wait_for(
            lambda: WorkerHeartbeat.objects.count() >= 2,
            timeout=60,
            message=f"the integrations worker never reported in:\n{light.logs()}",
        )
        yield light
    finally:
        stop_worker(light)


def test_upload_to_prediction_to_webhook_delivery_through_the_outbox(
    worker, integrations_worker, endpoint, receiver, patient, alice
):
    scan = services.scan_upload(
        patient=patient,
        files=[upload("m.jpg", dataset_slice("malignant/Malignant case (1).jpg"), "image/jpeg")],
        uploaded_by=alice,
    )
    # Relayed and sent on commit, while the inference worker takes the prediction and loads the model.
    wait_for(
        lambda: [p["type"] for p in receiver.events.values()] == ["study.received"],
        timeout=20,
        message=f"study.received not delivered:\n{integrations_worker.logs()}",
    )
    prediction = wait_for_prediction(scan.predictions.get().pk, timeout=300, worker=worker)
    assert prediction.status == "succeeded", prediction.error

    def delivered() -> bool:
        return {p["type"] for p in receiver.events.values()} == {"study.received", "prediction.succeeded"}

    wait_for(delivered, timeout=60, message=f"received: {list(receiver.events.values())}\n{worker.logs()}")
    events = OutboxEvent.objects.order_by("id")
    assert [(e.topic, e.dispatched_at is not None) for e in events] == [
        ("study.received", True),
        ("prediction.succeeded", True),
    ]
    assert WebhookDelivery.objects.filter(state="delivered").count() == 2
    assert receiver.rejected == []
