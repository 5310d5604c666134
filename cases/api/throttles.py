"""DRF's throttles, keyed by `core.net.client_ip`: the one rule for "who is calling" that lockouts
and the audit trail use too (DRF's own NUM_PROXIES reading differs when X-Forwarded-For is short)."""

from typing import Any

from rest_framework import throttling

from core.net import client_ip


class ClientIpMixin:
    def get_ident(self, request: Any) -> str:
        return client_ip(request) or ""


class AnonRateThrottle(ClientIpMixin, throttling.AnonRateThrottle):
    pass


class UserRateThrottle(ClientIpMixin, throttling.UserRateThrottle):
    pass


class ScopedRateThrottle(ClientIpMixin, throttling.ScopedRateThrottle):
    pass
