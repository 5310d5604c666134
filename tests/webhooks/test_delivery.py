"""Delivery: retries with backoff while the receiver is down, everything exactly once (after
de-duplication) when it is back, the log, disabling after repeated failure, the allow-list, and
team scoping."""

from __future__ import annotations

import datetime as dt
import json
import socket

import pytest
from django.core import mail
from django.utils import timezone

from audit.models import AuditEntry
from cases.models import Scan, Study
from tests.reading.studies import sign, study
from webhooks import hosts, services
from webhooks.events import emit
from webhooks.models import AllowedWebhookHost, EventType, WebhookAttempt, WebhookDelivery, WebhookEndpoint

from .conftest import drain, emitted, later
from .receiver import Receiver


def three_events(team, alice, patient):
    scan = study(patient, alice, suspicion=0.9)
    prediction = scan.predictions.get()
    review = sign(scan, alice, "malignant")
    return [
        emitted("study.received", team=team, subject=scan),
        emitted("prediction.succeeded", team=team, subject=prediction),
        emitted("review.signed", team=team, subject=review),
    ]


def test_backoff_doubles_from_30_seconds_to_an_hour_and_spans_about_eight_hours(settings):
    assert [services.delivery_backoff(n) for n in (1, 2, 3, 7, 8, 20)] == [30, 60, 120, 1920, 3600, 3600]
    waits = sum(services.delivery_backoff(n) for n in range(1, settings.WEBHOOK_MAX_ATTEMPTS))
    assert 7 * 3600 < waits < 9 * 3600


def test_a_receiver_down_for_an_hour_gets_every_event_exactly_once_when_back(
    endpoint, receiver, team_a, alice, patient
):
    receiver.stop()
    events = three_events(team_a, alice, patient)

    drain()  # the first attempts, refused
    for _ in range(7):  # an hour of backoff (30 s doubling), every retry refused
        later(3600)
        assert drain() == 3
    assert set(WebhookDelivery.objects.values_list("state", flat=True)) == {"pending"}
    assert set(WebhookDelivery.objects.values_list("attempts", flat=True)) == {8}
    assert receiver.requests == []

    receiver.start()
    later(3600)
    drain()

    assert set(WebhookDelivery.objects.values_list("state", flat=True)) == {"delivered"}
    assert set(receiver.events) == {event.event_id for event in events if event}
    assert sorted(receiver.received) == sorted(receiver.events)  # nothing twice
    endpoint.refresh_from_db()
    assert endpoint.enabled and endpoint.consecutive_failures == 0


def test_a_redelivered_event_is_a_duplicate_the_receiver_drops_by_its_id(endpoint, receiver, prediction):
    event = emitted("prediction.succeeded", team=endpoint.team, subject=prediction)
    drain()
    services.delivery_redeliver(delivery=WebhookDelivery.objects.get())
    drain()

    assert receiver.received == [event.event_id, event.event_id]
    assert list(receiver.events) == [event.event_id]


def test_a_message_delivered_twice_finds_nothing_to_claim(endpoint, receiver, prediction):
    emit("prediction.succeeded", team=endpoint.team, subject=prediction)
    delivery = WebhookDelivery.objects.get()

    assert services.delivery_send(delivery.pk) is not None
    assert services.delivery_send(delivery.pk) is None
    assert len(receiver.requests) == 1


def test_a_failed_attempt_is_not_retried_before_its_time(endpoint, receiver, prediction):
    receiver.answer = 500
    emit("prediction.succeeded", team=endpoint.team, subject=prediction)
    delivery = WebhookDelivery.objects.get()
    with pytest.raises(services.DeliveryRetry) as retry:
        services.delivery_send(delivery.pk)
    assert retry.value.countdown == 30

    assert services.delivery_send(delivery.pk) is None  # the backoff has not passed
    later(30)
    with pytest.raises(services.DeliveryRetry) as retry:
        services.delivery_send(delivery.pk)
    assert retry.value.countdown == 60


def test_the_log_records_status_codes_latency_and_errors(endpoint, receiver, prediction):
    emit("prediction.succeeded", team=endpoint.team, subject=prediction)
    receiver.answer = 500
    drain()
    receiver.stop()
    later(3600)
    drain()
    receiver.start()
    receiver.answer = 204
    later(3600)
    drain()

    log = list(WebhookAttempt.objects.order_by("at", "id"))
    assert [attempt.status_code for attempt in log] == [500, None, 204]
    assert "HTTP 500" in log[0].error
    assert "could not connect" in log[1].error
    assert log[2].error == "" and log[2].succeeded
    assert all(attempt.latency_ms is not None and attempt.latency_ms >= 0 for attempt in log)
    delivery = WebhookDelivery.objects.get()
    assert (delivery.state, delivery.attempts, delivery.last_status_code) == ("delivered", 3, 204)


def test_endpoint_disabled_after_repeated_failure_and_admins_told(
    endpoint, receiver, team_a, alice, patient, settings, sent_tasks, django_capture_on_commit_callbacks
):
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    settings.WEBHOOK_DISABLE_AFTER = 2
    settings.ADMINS = [("Ops", "ops@example.org")]
    receiver.stop()
    events = three_events(team_a, alice, patient)
    for _ in range(3):
        drain()
        later(3600)

    endpoint.refresh_from_db()
    assert not endpoint.enabled
    assert "2 deliveries in a row failed" in endpoint.disabled_reason
    assert len(mail.outbox) == 1
    assert endpoint.url in mail.outbox[0].subject and mail.outbox[0].to == ["ops@example.org"]
    assert endpoint.secret not in mail.outbox[0].body
    entry = AuditEntry.objects.get(object_type="webhookendpoint", detail__startswith="disabled")
    assert entry.changes == {"enabled": [True, False]}
    # Two ended failed; the third waits (not sent while disabled, nor counted).
    states = sorted(WebhookDelivery.objects.values_list("state", flat=True))
    assert states == ["failed", "failed", "pending"]
    assert services.deliveries_due().count() == 0
    assert events[2] is not None
    while_disabled = emitted("study.received", team=team_a, subject=study(patient, alice))
    assert while_disabled.deliveries.get().state == "held"
    assert services.deliveries_due().count() == 0

    receiver.start()
    with django_capture_on_commit_callbacks(execute=True):
        services.endpoint_enable(endpoint=endpoint)
    drain()
    assert list(receiver.events) == [events[2].event_id, while_disabled.event_id]  # those that waited
    endpoint.refresh_from_db()
    assert endpoint.enabled and endpoint.consecutive_failures == 0 and endpoint.disabled_reason == ""


def test_without_admins_configured_the_superusers_are_mailed(endpoint, admin_user, settings):
    settings.ADMINS = []
    admin_user.email = "admin@example.org"
    admin_user.save()

    services.endpoint_disable(endpoint_id=endpoint.pk, reason="testing")

    assert [message.to for message in mail.outbox] == [["admin@example.org"]]


def test_only_the_teams_subscribed_endpoints_get_its_events(endpoint, team_a, team_b, admin_user, prediction):
    other_team, _ = services.endpoint_create(
        team=team_b, url="http://127.0.0.1:9/b", events=EventType.values, created_by=admin_user
    )
    reviews_only, _ = services.endpoint_create(
        team=team_a, url="http://127.0.0.1:9/r", events=["review.signed"], created_by=admin_user
    )

    event = emitted("prediction.failed", team=team_a, subject=prediction)

    assert [d.endpoint for d in event.deliveries.all()] == [endpoint]
    assert not WebhookDelivery.objects.filter(endpoint__in=[other_team, reviews_only]).exists()


def test_no_subscribed_endpoint_no_event(team_a, prediction):
    assert emit("prediction.succeeded", team=team_a, subject=prediction) is None


def test_emit_refuses_an_unknown_type_or_the_wrong_subject(team_a, prediction):
    with pytest.raises(ValueError):
        emit("prediction.exploded", team=team_a, subject=prediction)
    with pytest.raises(ValueError):
        emit("review.signed", team=team_a, subject=prediction)


def test_emit_sends_each_delivery_once_the_transaction_commits(
    endpoint, prediction, sent_tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        emit("prediction.succeeded", team=endpoint.team, subject=prediction)
        assert sent_tasks == []

    assert sent_tasks == [WebhookDelivery.objects.get().pk]


def test_a_webhook_fault_never_undoes_the_clinical_change(endpoint, prediction, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(WebhookDelivery.objects, "bulk_create", broken)

    assert emit("prediction.succeeded", team=endpoint.team, subject=prediction) is None
    assert not WebhookDelivery.objects.exists()
    prediction.refresh_from_db()  # the caller's transaction is still usable


def test_payload_has_ids_and_absolute_links_and_no_patient_details(
    endpoint, receiver, team_a, alice, patient
):
    Study.objects.create(patient=patient)  # so that the study's id is not the scan's
    events = three_events(team_a, alice, patient)
    drain()

    for event in events:
        body = json.dumps(receiver.events[event.event_id])
        assert patient.mrn not in body and patient.name not in body
    study_data = receiver.events[events[0].event_id]["data"]
    review_data = receiver.events[events[2].event_id]["data"]
    scan_id, prediction_id = study_data["scan"]["id"], review_data["prediction"]["id"]
    # The series' link is to the ImagingStudy that holds it: FHIR's is one per study.
    study_id = Scan.objects.get(pk=scan_id).study_id
    assert study_data["scan"]["fhir"] == f"http://127.0.0.1:8000/fhir/ImagingStudy/{study_id}"
    assert study_data["scan"]["api"] == f"http://127.0.0.1:8000/api/v1/scans/{scan_id}/"
    assert study_data["patient"]["id"] == patient.pk
    assert review_data["review"]["fhir"].endswith(
        f"/fhir/DiagnosticReport/review-{review_data['review']['id']}"
    )
    assert review_data["prediction"]["fhir"].endswith(f"/fhir/DiagnosticReport/prediction-{prediction_id}")
    assert review_data["prediction"]["api"] == f"http://127.0.0.1:8000/api/v1/predictions/{prediction_id}/"


# --- the sweep ----------------------------------------------------------------------------------


def test_the_sweep_resends_due_and_abandoned_deliveries_in_event_order(endpoint, prediction, sent_tasks):
    first = emitted("prediction.succeeded", team=endpoint.team, subject=prediction)
    waiting = emitted("prediction.failed", team=endpoint.team, subject=prediction)
    abandoned = emitted("prediction.not_assessable", team=endpoint.team, subject=prediction)
    past = timezone.now() - dt.timedelta(minutes=5)
    WebhookDelivery.objects.filter(event=waiting).update(
        next_attempt_at=timezone.now() + dt.timedelta(hours=1)
    )
    WebhookDelivery.objects.filter(event=abandoned).update(state="sending", next_attempt_at=past)

    assert services.deliveries_sweep() == 2

    ids = [WebhookDelivery.objects.get(event=e).pk for e in (first, abandoned)]
    assert sent_tasks == ids


def test_a_success_brings_the_endpoints_backlog_forward(
    endpoint, receiver, prediction, sent_tasks, django_capture_on_commit_callbacks
):
    receiver.stop()
    emit("prediction.failed", team=endpoint.team, subject=prediction)
    emit("prediction.succeeded", team=endpoint.team, subject=prediction)
    drain()  # both refused, now waiting 30 s
    receiver.start()
    newest = emitted("study.received", team=endpoint.team, subject=prediction.scan)

    with django_capture_on_commit_callbacks(execute=True):
        services.delivery_send(newest.deliveries.get().pk)

    backlog = list(
        WebhookDelivery.objects.exclude(event=newest).order_by("event_id").values_list("pk", flat=True)
    )
    assert sent_tasks == backlog
    assert services.deliveries_due().count() == 2


# --- the allow-list -----------------------------------------------------------------------------


def test_delivery_refuses_a_host_taken_off_the_allow_list(endpoint, receiver, prediction, local_hosts):
    emit("prediction.succeeded", team=endpoint.team, subject=prediction)
    local_hosts.delete()

    drain()

    assert receiver.requests == []
    attempt = WebhookAttempt.objects.get()
    assert attempt.status_code is None and "not on the allow-list" in attempt.error


def test_delivery_refuses_loopback_unless_the_entry_allows_private_addresses(
    endpoint, receiver, prediction, local_hosts
):
    emit("prediction.succeeded", team=endpoint.team, subject=prediction)
    local_hosts.allow_private = False
    local_hosts.save()

    drain()

    assert receiver.requests == []
    assert "private or loopback" in WebhookAttempt.objects.get().error


def test_delivery_refuses_a_listed_name_that_resolves_to_a_private_address(db, monkeypatch):
    AllowedWebhookHost.objects.create(pattern="hooks.example.org")
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda *a, **k: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", 443))],
    )
    with pytest.raises(hosts.HostRefused, match="10.1.2.3"):
        hosts.delivery_check("https://hooks.example.org/in")

    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda *a, **k: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 443))],
    )
    hosts.delivery_check("https://hooks.example.org/in")


@pytest.mark.parametrize(
    ("pattern", "url", "allowed"),
    [
        ("hooks.example.org", "https://hooks.example.org/in", True),
        ("hooks.example.org", "https://hooks.example.org:8443/in", True),
        ("hooks.example.org", "https://evil.example.org/in", False),
        ("hooks.example.org", "https://hooks.example.org.evil.net/in", False),
        ("hooks.example.org:8443", "https://hooks.example.org:8443/in", True),
        ("hooks.example.org:8443", "https://hooks.example.org/in", False),
        ("*.example.org", "https://a.b.example.org/in", True),
        ("*.example.org", "https://example.org.evil.net/in", False),
        ("hooks.example.org", "ftp://hooks.example.org/in", False),
        ("hooks.example.org", "https://user:pw@hooks.example.org/in", False),
        ("127.0.0.1", "http://127.0.0.1:8080/in", False),  # loopback needs allow_private
        ("localhost", "http://localhost/in", False),
        ("10.0.0.5", "http://10.0.0.5/in", False),
    ],
)
def test_registration_allows_only_listed_public_hosts(db, pattern, url, allowed):
    AllowedWebhookHost.objects.create(pattern=pattern)
    if allowed:
        hosts.registration_check(url)
    else:
        with pytest.raises(hosts.HostRefused):
            hosts.registration_check(url)


def test_registration_refuses_a_host_not_on_the_list(team_a, admin_user, local_hosts):
    with pytest.raises(hosts.HostRefused, match="not on the allow-list"):
        services.endpoint_create(
            team=team_a,
            url="https://elsewhere.example.net/in",
            events=["review.signed"],
            created_by=admin_user,
        )
    assert not WebhookEndpoint.objects.exists()


def test_a_second_receiver_of_another_team_sees_only_its_own(
    endpoint, receiver, team_b, admin_user, alice, patient, charlie
):
    from tests import factories

    theirs = Receiver()
    theirs.start()
    try:
        _, secret = services.endpoint_create(
            team=team_b, url=theirs.url, events=["study.received"], created_by=admin_user
        )
        theirs.secret = secret
        patient_b = factories.PatientFactory(team=team_b, created_by=charlie)
        mine = emitted("study.received", team=endpoint.team, subject=study(patient, alice))
        other = emitted("study.received", team=team_b, subject=study(patient_b, charlie))
        drain()
    finally:
        theirs.stop()
    assert list(receiver.events) == [mine.event_id]
    assert list(theirs.events) == [other.event_id]
