"""The allow-list: which URLs a webhook may call. Checked when an endpoint is registered (the
host must be listed; a literal private address or `localhost` needs `allow_private`) and again
before every request: the name is resolved once, every address it has is checked, and the request
connects to the checked address (`Resolved.address`), never resolving the name again — a second
lookup could answer differently (DNS rebinding) and reach loopback."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from .models import AllowedWebhookHost

DEFAULT_PORTS = {"http": 80, "https": 443}
LOCAL_NAMES = {"localhost", "localhost.localdomain"}


class HostRefused(Exception):
    """The URL may not be called; the message says why, in words an admin can act on."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int

    @property
    def host_header(self) -> str:
        """The Host header a client sends for this target (the port only when not the default)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


@dataclass(frozen=True)
class Resolved:
    """A target that passed the delivery check, and the one address to connect to."""

    target: Target
    address: str


def target_of(url: str) -> Target:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise HostRefused(f"{url!r} is not a valid URL ({exc})") from exc
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise HostRefused("only http and https URLs can be called")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise HostRefused("the URL names no host")
    if parts.username or parts.password:
        raise HostRefused("the URL may not carry a user name or password")
    return Target(scheme, host, port or DEFAULT_PORTS[scheme])


def _split_pattern(pattern: str) -> tuple[str, int | None]:
    pattern = pattern.strip().lower().rstrip(".")
    if pattern.startswith("["):  # [::1] or [::1]:8000
        host, _, rest = pattern[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        return host, int(port) if port.isdigit() else None
    host, colon, port = pattern.rpartition(":")
    if colon and port.isdigit() and ":" not in host:
        return host, int(port)
    return pattern, None


def _matches(pattern: str, target: Target) -> bool:
    host, port = _split_pattern(pattern)
    if port is not None and port != target.port:
        return False
    if host.startswith("*."):
        return target.host.endswith(host[1:])
    return host == target.host


def allowing_entry(target: Target) -> AllowedWebhookHost | None:
    """The allow-list entry that lets `target` be called, preferring one that allows private
    addresses (an admin who listed both meant the stronger)."""
    entries = [entry for entry in AllowedWebhookHost.objects.all() if _matches(entry.pattern, target)]
    entries.sort(key=lambda entry: not entry.allow_private)
    return entries[0] if entries else None


def _is_private(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def _literal_address(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def registration_check(url: str) -> Target:
    """Refuse (HostRefused) a URL whose host is not on the allow-list, or that names a private
    address or `localhost` without the entry allowing it. Names are not resolved here."""
    target = target_of(url)
    entry = allowing_entry(target)
    if entry is None:
        raise HostRefused(
            f"{target.host}:{target.port} is not on the allow-list of webhook hosts; an admin adds it "
            "under Webhooks → Allowed webhook hosts"
        )
    literal = _literal_address(target.host)
    private = target.host in LOCAL_NAMES or (literal is not None and _is_private(literal))
    if private and not entry.allow_private:
        raise HostRefused(
            f"{target.host} is a private or loopback address; its allow-list entry "
            f"{entry.pattern!r} must allow private addresses"
        )
    return target


def delivery_check(url: str) -> Resolved:
    """Before each request: the registration check, then the host resolved once; every address
    it has must be public unless its entry allows private ones. Returns the address to connect to
    (the first, in the resolver's order of preference). Raises HostRefused."""
    target = registration_check(url)
    entry = allowing_entry(target)
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise HostRefused(f"could not resolve {target.host}: {exc}") from exc
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise HostRefused(f"could not resolve {target.host}: no addresses")
    if entry is None or not entry.allow_private:
        for address in addresses:
            if _is_private(address):
                raise HostRefused(
                    f"{target.host} resolves to {address}, a private or loopback address, and its "
                    "allow-list entry does not allow private addresses"
                )
    return Resolved(target, addresses[0])
