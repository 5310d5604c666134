import pytest
from django.urls import reverse

from health.models import WorkerHeartbeat


@pytest.fixture
def no_live_worker(monkeypatch):
    """Look from an hour ahead: whatever worker the test session runs has not reported since."""
    from datetime import timedelta

    from django.utils import timezone

    from health import checks

    later = timezone.now() + timedelta(hours=1)
    monkeypatch.setattr(checks, "timezone", type("Clock", (), {"now": staticmethod(lambda: later)}))


@pytest.mark.django_db
def test_healthz_is_503_and_names_the_missing_worker(client, no_live_worker):
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

    WorkerHeartbeat.objects.all().delete()
    WorkerHeartbeat.objects.create(hostname="old@host", last_seen=timezone.now() - timedelta(minutes=5))
    response = client.get(reverse("healthz"))
    if response.json()["worker"]["ok"]:  # the session's own worker wrote a heartbeat meanwhile
        assert "old@host" not in response.json()["worker"]["detail"]
    else:
        assert response.status_code == 503


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
