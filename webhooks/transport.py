"""The HTTP session webhook requests are made with: it connects to the address the allow-list
check passed (`hosts.Resolved`), never resolving the name again, and ignores the environment's
proxies (a proxy would resolve the name itself, unchecked)."""

from __future__ import annotations

import os
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from .hosts import Resolved


class PinnedAdapter(HTTPAdapter):
    """Sends requests for one checked target to its checked address.

    The URL keeps the name, so the request line is unchanged; only the connection pool is made for
    the address. For https the name is still the TLS server name (SNI) and the one the
    certificate is verified against, and the Host header is always the name."""

    def __init__(self, resolved: Resolved) -> None:
        self.resolved = resolved  # set first: HTTPAdapter.__init__ makes the pool manager
        super().__init__(max_retries=0)

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        target = self.resolved.target
        asked = (host_params["scheme"], (host_params["host"] or "").rstrip("."), host_params["port"])
        if asked[:2] != (target.scheme, target.host) or asked[2] not in (None, target.port):
            # Only the checked URL's origin is pinned; anything else (a redirect) is not sent.
            raise requests.exceptions.InvalidURL(f"{request.url} is not the checked webhook URL")
        host_params["host"] = self.resolved.address
        host_params["port"] = target.port
        if target.scheme == "https":
            pool_kwargs["server_hostname"] = target.host  # SNI
            pool_kwargs["assert_hostname"] = target.host  # the certificate must name the host
        return host_params, pool_kwargs

    def add_headers(self, request: requests.PreparedRequest, **kwargs: Any) -> None:
        # urllib3 would otherwise send the pool's host, the address.
        request.headers["Host"] = self.resolved.target.host_header


def pinned_session(resolved: Resolved) -> requests.Session:
    """A session that sends only to `resolved`'s address, proxies in the environment ignored.

    `trust_env = False` also drops the CA bundle variables requests reads; they are kept (a
    hospital's own CA for receivers on its network), and nothing else from the environment."""
    session = requests.Session()
    session.trust_env = False
    session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    adapter = PinnedAdapter(resolved)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
