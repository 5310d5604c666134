"""Standard Webhooks signatures, checked by a real receiver with the standardwebhooks library."""

from __future__ import annotations

import base64
import json

import pytest
import requests
from standardwebhooks import Webhook, WebhookVerificationError

from webhooks.events import emit
from webhooks.models import WebhookDelivery
from webhooks.signing import secret_generate

from .conftest import drain, emitted


def test_secrets_are_standard_webhooks_secrets_and_never_repeat():
    first, second = secret_generate(), secret_generate()
    assert first.startswith("whsec_") and first != second
    assert len(base64.b64decode(first.removeprefix("whsec_"))) == 32


def test_receiver_verifies_a_delivered_event_with_the_library(endpoint, receiver, prediction):
    event = emitted("prediction.succeeded", team=endpoint.team, subject=prediction)

    drain()

    assert receiver.rejected == []
    assert list(receiver.events) == [event.event_id]
    payload = receiver.events[event.event_id]
    assert payload["type"] == "prediction.succeeded"
    assert payload["data"]["prediction"]["id"] == prediction.pk
    headers = {k.lower(): v for k, v in receiver.requests[0].headers.items()}
    assert headers["webhook-id"] == event.event_id
    assert headers["webhook-signature"].startswith("v1,")
    assert headers["content-type"] == "application/json"
    assert WebhookDelivery.objects.get(event=event).state == "delivered"


def test_a_tampered_body_or_signature_is_rejected_by_the_receivers_check(endpoint, receiver, prediction):
    emit("prediction.succeeded", team=endpoint.team, subject=prediction)
    drain()
    genuine = receiver.requests[0]
    tampered = json.loads(genuine.body)
    tampered["data"]["prediction"]["id"] += 1
    forged_body = json.dumps(tampered, separators=(",", ":"), sort_keys=True).encode()
    forged_signature = {**genuine.headers, "webhook-signature": "v1," + base64.b64encode(b"x" * 32).decode()}

    with pytest.raises(WebhookVerificationError):
        receiver.check(forged_body, genuine.headers)
    with pytest.raises(WebhookVerificationError):
        receiver.check(genuine.body, forged_signature)
    assert (
        requests.post(receiver.url, data=forged_body, headers=genuine.headers, timeout=5).status_code == 400
    )
    assert (
        requests.post(receiver.url, data=genuine.body, headers=forged_signature, timeout=5).status_code == 400
    )

    assert len(receiver.rejected) == 2
    assert len(receiver.events) == 1  # only the genuine one


def test_a_signature_made_with_another_secret_is_rejected(endpoint, receiver, prediction):
    emit("prediction.succeeded", team=endpoint.team, subject=prediction)
    drain()
    genuine = receiver.requests[0]

    with pytest.raises(WebhookVerificationError):
        Webhook(secret_generate()).verify(genuine.body, genuine.headers)
    Webhook(endpoint.secret).verify(genuine.body, genuine.headers)  # the endpoint's own passes


def test_a_retry_keeps_the_id_and_body_and_signs_a_fresh_timestamp(endpoint, receiver, prediction):
    emit("prediction.succeeded", team=endpoint.team, subject=prediction)
    receiver.answer = 503
    drain()
    receiver.answer = 200
    WebhookDelivery.objects.update(next_attempt_at=WebhookDelivery.objects.get().created_at)
    drain()

    first, second = receiver.requests
    assert first.body == second.body
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert len(receiver.events) == 1
