"""Registering endpoints in Django admin and the API (staff only), the secret shown once, the
delivery log in admin and its manual redelivery."""

from __future__ import annotations

import pytest
from django.urls import reverse
from knox.models import AuthToken
from rest_framework.test import APIClient

from audit.models import AuditEntry
from tests import factories
from webhooks import services
from webhooks.events import emit
from webhooks.models import WebhookDelivery, WebhookEndpoint

from .conftest import drain

LIST = "/api/v1/webhooks/"


def api_as(user=None) -> APIClient:
    client = APIClient()
    if user is not None:
        _, token = AuthToken.objects.create(user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def detail(pk: int) -> str:
    return f"{LIST}{pk}/"


# --- API ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "post"])
def test_anonymous_gets_401_and_clinicians_403_for_the_list(method, alice, bob, local_hosts):
    assert getattr(api_as(), method)(LIST).status_code == 401
    assert getattr(api_as(alice), method)(LIST).status_code == 403


@pytest.mark.parametrize("method", ["get", "patch", "delete"])
def test_anonymous_gets_401_and_clinicians_403_for_an_endpoint(method, endpoint, alice):
    assert getattr(api_as(), method)(detail(endpoint.pk)).status_code == 401
    assert getattr(api_as(alice), method)(detail(endpoint.pk)).status_code == 403
    assert WebhookEndpoint.objects.filter(pk=endpoint.pk, enabled=True).exists()


def test_staff_without_the_permission_get_403(db):
    staff = factories.UserFactory(username="helpdesk", is_staff=True)
    assert api_as(staff).get(LIST).status_code == 403


def test_admin_registers_an_endpoint_and_sees_its_secret_once(admin_user, team_a, local_hosts, receiver):
    client = api_as(admin_user)
    answer = client.post(
        LIST, {"team": team_a.pk, "url": receiver.url, "events": ["review.signed", "study.received"]}
    )

    assert answer.status_code == 201, answer.json()
    body = answer.json()
    endpoint = WebhookEndpoint.objects.get(pk=body["id"])
    assert body["secret"] == endpoint.secret and body["secret"].startswith("whsec_")
    assert endpoint.events == ["review.signed", "study.received"] and endpoint.created_by == admin_user
    assert "secret" not in client.get(detail(endpoint.pk)).json()
    assert all("secret" not in row for row in client.get(LIST).json()["results"])
    entry = AuditEntry.objects.get(object_type="webhookendpoint", action="create")
    assert endpoint.secret not in str(entry.changes) + entry.detail


def test_the_api_refuses_a_host_off_the_allow_list_and_unknown_events(admin_user, team_a, local_hosts):
    client = api_as(admin_user)
    off_list = client.post(
        LIST, {"team": team_a.pk, "url": "https://elsewhere.example.net/", "events": ["review.signed"]}
    )
    unknown = client.post(
        LIST, {"team": team_a.pk, "url": "http://127.0.0.1:9/", "events": ["review.deleted"]}
    )

    assert off_list.status_code == 400 and "allow-list" in off_list.json()["errors"]["url"][0]
    assert unknown.status_code == 400 and "events" in unknown.json()["errors"]
    assert not WebhookEndpoint.objects.exists()


def test_admin_changes_enables_and_deletes_an_endpoint(admin_user, endpoint):
    client = api_as(admin_user)
    services.endpoint_disable(endpoint_id=endpoint.pk, reason="testing")

    changed = client.patch(detail(endpoint.pk), {"events": ["review.amended"], "enabled": True})

    assert changed.status_code == 200, changed.json()
    endpoint.refresh_from_db()
    assert endpoint.events == ["review.amended"] and endpoint.enabled and endpoint.disabled_reason == ""
    assert client.patch(detail(endpoint.pk), {"url": "https://elsewhere.example.net/"}).status_code == 400
    assert client.delete(detail(endpoint.pk)).status_code == 204
    assert not WebhookEndpoint.objects.exists()
    assert AuditEntry.objects.filter(object_type="webhookendpoint", action="delete").exists()


# --- admin --------------------------------------------------------------------------------------


def test_admin_add_shows_the_generated_secret_once(client, admin_user, team_a, local_hosts):
    client.force_login(admin_user)
    answer = client.post(
        reverse("admin:webhooks_webhookendpoint_add"),
        {"team": team_a.pk, "url": "http://127.0.0.1:9/in", "events": ["prediction.failed"], "enabled": "on"},
    )

    assert answer.status_code == 302
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.secret.startswith("whsec_") and endpoint.events == ["prediction.failed"]
    shown = client.get(answer["Location"])  # the page it leads to shows the secret, once
    assert endpoint.secret in shown.content.decode() and "not shown again" in shown.content.decode()
    page = client.get(reverse("admin:webhooks_webhookendpoint_change", args=[endpoint.pk]))
    assert page.status_code == 200 and endpoint.secret not in page.content.decode()
    assert 'type="checkbox" name="events"' in page.content.decode()


def test_admin_add_refuses_a_host_off_the_allow_list(client, admin_user, team_a, local_hosts):
    client.force_login(admin_user)
    answer = client.post(
        reverse("admin:webhooks_webhookendpoint_add"),
        {"team": team_a.pk, "url": "https://elsewhere.example.net/", "events": ["prediction.failed"]},
    )

    assert answer.status_code == 200 and "allow-list" in answer.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_admin_list_says_which_endpoints_were_disabled_and_why(client, admin_user, endpoint):
    services.endpoint_disable(endpoint_id=endpoint.pk, reason="5 deliveries in a row failed")
    client.force_login(admin_user)

    page = client.get(reverse("admin:webhooks_webhookendpoint_changelist")).content.decode()

    assert "is disabled: 5 deliveries in a row failed" in page


def test_admin_shows_the_delivery_log_and_redelivers(
    client, admin_user, endpoint, receiver, prediction, sent_tasks, django_capture_on_commit_callbacks
):
    emit("prediction.succeeded", team=endpoint.team, subject=prediction)
    receiver.answer = 502
    drain()
    delivery = WebhookDelivery.objects.get()
    client.force_login(admin_user)

    for name in (
        "webhookdelivery",
        "webhookattempt",
        "webhookevent",
        "webhookendpoint",
        "allowedwebhookhost",
    ):
        assert client.get(reverse(f"admin:webhooks_{name}_changelist")).status_code == 200
    page = client.get(reverse("admin:webhooks_webhookdelivery_change", args=[delivery.pk])).content.decode()
    assert "502" in page and "latency ms" in page.lower()  # the attempts inline
    assert (
        client.get(reverse("admin:webhooks_webhookevent_change", args=[delivery.event_id])).status_code == 200
    )

    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(
            reverse("admin:webhooks_webhookdelivery_changelist"),
            {"action": "redeliver", "_selected_action": [delivery.pk]},
        )

    assert answer.status_code == 302
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == ("pending", 0)
    assert sent_tasks == [delivery.pk]
    assert AuditEntry.objects.filter(object_type="webhookdelivery", object_id=delivery.pk).exists()
