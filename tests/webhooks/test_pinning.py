"""Delivery connects to the address the allow-list check passed: a name is resolved once per
attempt, a second answer (DNS rebinding) is never used, https still checks the certificate for
the name, and proxies in the environment are ignored."""

from __future__ import annotations

import ipaddress
import shutil
import socket
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import urllib3.util.connection

from webhooks import services
from webhooks.models import AllowedWebhookHost, WebhookAttempt, WebhookDelivery

from .conftest import drain, emitted
from .receiver import Receiver

NAME = "hooks.example.test"
PUBLIC = "93.184.215.14"


@pytest.fixture
def resolver(monkeypatch) -> SimpleNamespace:
    """socket.getaddrinfo answers NAME with `answers` in turn (the last repeats) and counts the
    lookups; any other host (an address urllib3 is given) is resolved for real."""
    real = socket.getaddrinfo
    state = SimpleNamespace(answers=[], lookups=0)

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != NAME:
            return real(host, port, *args, **kwargs)
        address = state.answers[min(state.lookups, len(state.answers) - 1)]
        state.lookups += 1
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port)))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return state


@pytest.fixture
def connections(monkeypatch) -> list[str]:
    """The hosts urllib3 opens connections to. A public address is refused on the spot (tests
    have no network); anything else is connected to for real."""
    real = urllib3.util.connection.create_connection
    made: list[str] = []

    def create_connection(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        made.append(address[0])
        try:
            public = ipaddress.ip_address(address[0]).is_global
        except ValueError:  # a name: resolved (again) by urllib3 itself
            public = False
        if public:
            raise ConnectionRefusedError(f"{address[0]} is out of reach in tests")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", create_connection)
    return made


def endpoint_for(url: str, *, team, admin_user, receiver: Receiver):
    endpoint, receiver.secret = services.endpoint_create(
        team=team, url=url, events=["prediction.succeeded"], created_by=admin_user
    )
    return endpoint


def test_a_name_that_rebinds_to_loopback_after_the_check_never_reaches_it(
    team_a, admin_user, receiver, prediction, resolver, connections
):
    AllowedWebhookHost.objects.create(pattern=NAME)  # public addresses only
    resolver.answers = [PUBLIC, "127.0.0.1"]  # checked: public; asked again: loopback
    endpoint_for(
        f"http://{NAME}:{receiver.port}/hooks", team=team_a, admin_user=admin_user, receiver=receiver
    )
    emitted("prediction.succeeded", team=team_a, subject=prediction)

    drain()

    assert receiver.requests == []
    assert resolver.lookups == 1
    assert connections == [PUBLIC]  # the checked address, and only it
    attempt = WebhookAttempt.objects.get()
    assert attempt.status_code is None and "could not connect" in attempt.error


def test_a_name_resolving_to_loopback_first_is_refused_without_connecting(
    team_a, admin_user, receiver, prediction, resolver, connections
):
    AllowedWebhookHost.objects.create(pattern=NAME)
    resolver.answers = ["127.0.0.1", PUBLIC]
    endpoint_for(
        f"http://{NAME}:{receiver.port}/hooks", team=team_a, admin_user=admin_user, receiver=receiver
    )
    emitted("prediction.succeeded", team=team_a, subject=prediction)

    drain()

    assert receiver.requests == [] and connections == [] and resolver.lookups == 1
    assert "private or loopback" in WebhookAttempt.objects.get().error


def test_a_listed_name_allowed_private_is_delivered_to_its_address_with_its_host_header(
    team_a, admin_user, receiver, prediction, resolver, connections
):
    AllowedWebhookHost.objects.create(pattern=NAME, allow_private=True)
    resolver.answers = ["127.0.0.1"]
    endpoint_for(
        f"http://{NAME}:{receiver.port}/hooks", team=team_a, admin_user=admin_user, receiver=receiver
    )
    event = emitted("prediction.succeeded", team=team_a, subject=prediction)

    drain()

    assert list(receiver.events) == [event.event_id]
    assert receiver.requests[0].headers["Host"] == f"{NAME}:{receiver.port}"
    assert resolver.lookups == 1 and connections == ["127.0.0.1"]


def test_proxies_in_the_environment_are_ignored(endpoint, receiver, prediction, monkeypatch):
    for variable in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9")  # nothing listens there
    for variable in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(variable, raising=False)
    event = emitted("prediction.succeeded", team=endpoint.team, subject=prediction)

    drain()

    assert list(receiver.events) == [event.event_id]
    assert WebhookDelivery.objects.get().state == "delivered"


def certificate_for(name: str, folder: Path) -> tuple[str, str]:
    """A self-signed certificate (its own CA) for `name`, made with the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", f"/CN={name}"]
        + ["-addext", f"subjectAltName=DNS:{name}"],
        check=True,
        capture_output=True,
    )
    return str(cert), str(key)


@pytest.mark.parametrize(("certified", "delivered"), [(NAME, True), ("other.example.test", False)])
def test_https_to_a_pinned_address_checks_the_certificate_for_the_name(
    certified, delivered, team_a, admin_user, prediction, resolver, tmp_path, monkeypatch
):
    tls = certificate_for(certified, tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls[0])  # the hospital's CA: still honoured
    AllowedWebhookHost.objects.create(pattern=NAME, allow_private=True)
    resolver.answers = ["127.0.0.1"]
    receiver = Receiver(tls=tls)
    receiver.start()
    try:
        endpoint_for(
            f"https://{NAME}:{receiver.port}/hooks", team=team_a, admin_user=admin_user, receiver=receiver
        )
        event = emitted("prediction.succeeded", team=team_a, subject=prediction)
        drain()
    finally:
        receiver.stop()

    assert receiver.server_names[:1] == [NAME]  # SNI names the host, not the address
    if delivered:
        assert list(receiver.events) == [event.event_id]
        assert receiver.requests[0].headers["Host"] == f"{NAME}:{receiver.port}"
    else:
        assert receiver.requests == []
        assert "TLS" in WebhookAttempt.objects.get().error
