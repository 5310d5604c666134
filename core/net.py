"""Who is on the other end of a request: the one answer that throttles, lockouts and the audit
trail all use."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str | None:
    """The client's address, trusting X-Forwarded-For only as far as our own proxies go.

    With `TRUSTED_PROXIES` = 0 the portal faces clients directly and the header is anyone's to
    write, so only the socket's address counts. With N proxies, each appends the address it saw:
    the N-th entry from the right was written by our outermost proxy; anything left of it was
    sent by the client and is ignored. A header shorter than that did not come through all our
    proxies, so its entries prove nothing and the socket's address is used instead.
    """
    remote = request.META.get("REMOTE_ADDR") or None
    proxies: int = settings.TRUSTED_PROXIES
    if proxies == 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [part for part in forwarded if part]
    if len(forwarded) < proxies:
        return remote
    return forwarded[-proxies]
