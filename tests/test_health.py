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
def test_healthz_is_503_and_names_the_missing_worker(admin_client, no_live_worker):
    response = admin_client.get(reverse("healthz"))
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["database"]["ok"] and body["broker"]["ok"] and body["model_version"]["ok"]
    assert not body["worker"]["ok"] and "no worker" in body["worker"]["detail"]


@pytest.mark.django_db
def test_healthz_reports_a_stale_heartbeat_as_missing(admin_client):
    from datetime import timedelta

    from django.utils import timezone

    WorkerHeartbeat.objects.all().delete()
    WorkerHeartbeat.objects.create(hostname="old@host", last_seen=timezone.now() - timedelta(minutes=5))
    response = admin_client.get(reverse("healthz"))
    if response.json()["worker"]["ok"]:  # the session's own worker wrote a heartbeat meanwhile
        assert "old@host" not in response.json()["worker"]["detail"]
    else:
        assert response.status_code == 503


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_healthz_is_200_with_a_live_worker(admin_client, worker):
    response = admin_client.get(reverse("healthz"))
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


@pytest.mark.django_db
def test_healthz_reports_weights_that_no_longer_match_their_hashes(admin_client, tmp_path):
    import shutil

    from inference.artifacts import card_members, read_card
    from inference.models import ModelVersion
    from inference.services import model_version_active

    version = model_version_active()
    folder = tmp_path / "weights"
    shutil.copytree(version.weights_path, folder)
    ModelVersion.objects.filter(pk=version.pk).update(weights_dir=str(folder))
    assert admin_client.get(reverse("healthz")).json()["model_version"]["ok"]

    member = folder / next(iter(card_members(read_card(folder))))
    data = bytearray(member.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte changed
    member.write_bytes(bytes(data))
    body = admin_client.get(reverse("healthz")).json()
    assert not body["model_version"]["ok"] and "does not match" in body["model_version"]["detail"]


@pytest.mark.django_db
def test_healthz_tells_the_public_only_up_or_down(client, alice, no_live_worker):
    """The public (and clinicians) learn no host names, broker address or model version."""
    for viewer in (client, None):
        if viewer is None:
            client.force_login(alice)
        body = client.get(reverse("healthz")).json()
        assert set(body) == {"status", "database", "broker", "worker", "model_version"}
        assert all(body[name] == {"ok": body[name]["ok"]} for name in body if name != "status")
