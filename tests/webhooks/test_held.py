"""Events that happen while an endpoint is disabled are recorded and held; enabling it again (in
Django admin or the API) sends them, oldest first, each once."""

from __future__ import annotations

import datetime as dt

from django.urls import reverse
from django.utils import timezone

from webhooks import services
from webhooks.events import emit
from webhooks.models import WebhookDelivery, WebhookEvent

from .conftest import drain, emitted
from .test_admin_api import api_as, detail


def send_as_the_worker_would(delivery_ids: list[int]) -> None:
    for delivery_id in delivery_ids:
        services.delivery_send(delivery_id)


def test_events_while_disabled_are_held_and_sent_in_order_once_enabled_in_admin(
    client, admin_user, endpoint, receiver, prediction, sent_tasks, django_capture_on_commit_callbacks
):
    services.endpoint_disable(endpoint_id=endpoint.pk, reason="receiver down")
    first = emitted("prediction.succeeded", team=endpoint.team, subject=prediction)
    second = emitted("study.received", team=endpoint.team, subject=prediction.scan)
    assert set(WebhookDelivery.objects.values_list("state", flat=True)) == {"held"}
    assert drain() == 0 and sent_tasks == [] and receiver.requests == []
    # Held for three days, far past the retry window: sent all the same.
    three_days_ago = timezone.now() - dt.timedelta(days=3)
    WebhookEvent.objects.update(created_at=three_days_ago)
    WebhookDelivery.objects.update(created_at=three_days_ago, next_attempt_at=three_days_ago)
    client.force_login(admin_user)

    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(
            reverse("admin:webhooks_webhookendpoint_changelist"),
            {"action": "enable", "_selected_action": [endpoint.pk]},
        )

    assert answer.status_code == 302
    held = [first.deliveries.get().pk, second.deliveries.get().pk]
    assert sent_tasks == held  # oldest first
    send_as_the_worker_would(sent_tasks)
    assert drain() == 0  # nothing left to send
    assert receiver.received == [first.event_id, second.event_id]  # in order, each once
    assert set(WebhookDelivery.objects.values_list("state", "attempts")) == {("delivered", 1)}


def test_events_while_disabled_in_the_api_are_sent_in_order_once_enabled_in_the_api(
    admin_user, endpoint, receiver, prediction, sent_tasks, django_capture_on_commit_callbacks
):
    client = api_as(admin_user)
    assert client.patch(detail(endpoint.pk), {"enabled": False}).status_code == 200
    first = emitted("prediction.failed", team=endpoint.team, subject=prediction)
    second = emitted("prediction.succeeded", team=endpoint.team, subject=prediction)
    assert drain() == 0 and receiver.requests == []

    with django_capture_on_commit_callbacks(execute=True):
        assert client.patch(detail(endpoint.pk), {"enabled": True}).status_code == 200

    send_as_the_worker_would(sent_tasks)
    drain()
    assert receiver.received == [first.event_id, second.event_id]
    assert set(WebhookDelivery.objects.values_list("state", flat=True)) == {"delivered"}


def test_a_delivery_held_while_its_endpoint_was_being_enabled_is_released_by_the_sweep(
    endpoint, receiver, prediction, sent_tasks
):
    event = emitted("prediction.succeeded", team=endpoint.team, subject=prediction)
    # As if recorded by a transaction that read the endpoint just before it was enabled.
    event.deliveries.update(state=WebhookDelivery.State.HELD)

    assert services.deliveries_sweep() == 1

    send_as_the_worker_would(sent_tasks)
    assert receiver.received == [event.event_id]


def test_a_disabled_endpoint_holds_only_the_events_it_subscribes_to(endpoint, prediction):
    services.endpoint_update(endpoint=endpoint, enabled=False, events=["review.signed"])

    assert emit("prediction.succeeded", team=endpoint.team, subject=prediction) is None
    assert not WebhookDelivery.objects.exists()
