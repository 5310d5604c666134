import pytest
from django.urls import reverse

from health.models import WorkerHeartbeat


@pytest.mark.django_db
def test_healthz_is_503_and_names_the_missing_worker(client):
    response = client.get(reverse("healthz"))
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["database"]["ok"] and body["broker"]["ok"] and body["model_version"]["ok"]
    assert not body["worker"]["ok"] and "no worker" in body["worker"]["detail"]


@pytest.mark.django_db
def test_healthz_reports_a_stale_heartbeat_as_missing(client):
    from datetime import timedelta

    from django.utils import timezone

    WorkerHeartbeat.objects.create(hostname="old@host", last_seen=timezone.now() - timedelta(minutes=5))
    assert client.get(reverse("healthz")).status_code == 503


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_healthz_is_200_with_a_live_worker(client, worker):
    response = client.get(reverse("healthz"))
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ok" and body["worker"]["detail"].startswith("test-")
    assert body["model_version"]["detail"]


@pytest.mark.django_db
def test_healthz_is_503_when_the_broker_is_unreachable(client, settings):
    from lungportal.celery import app

    original = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    try:
        response = client.get(reverse("healthz"))
    finally:
        app.conf.broker_url = original
    assert response.status_code == 503 and not response.json()["broker"]["ok"]
