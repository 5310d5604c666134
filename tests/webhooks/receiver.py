"""A real webhook receiver on 127.0.0.1: verifies every request with the standardwebhooks
library, records events by their id (dropping duplicates), and can be taken down and brought
back on the same port. Given a certificate and key (`tls`), it speaks https and records the TLS
server names (SNI) it was asked for."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError


@dataclass
class Request:
    body: bytes
    headers: dict[str, str]


@dataclass
class Receiver:
    secret: str = ""
    answer: int = 200  # the status every verified request gets
    events: dict[str, Any] = field(default_factory=dict)  # de-duplicated, by webhook-id
    received: list[str] = field(default_factory=list)  # every verified request's id, duplicates too
    requests: list[Request] = field(default_factory=list)  # every request, verified or not
    rejected: list[str] = field(default_factory=list)  # why each refused request was refused
    tls: tuple[str, str] | None = None  # (certificate file, key file): https
    server_names: list[str | None] = field(default_factory=list)  # SNI of each TLS handshake
    port: int = 0
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/hooks"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = receiver.handle(body, dict(self.headers.items()))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            context.sni_callback = lambda sock, name, ctx: self.server_names.append(name)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)

    def check(self, body: bytes, headers: dict[str, str]) -> Any:
        """The receiver's check: the payload, or WebhookVerificationError."""
        return Webhook(self.secret).verify(body, headers)

    def handle(self, body: bytes, headers: dict[str, str]) -> int:
        with self._lock:
            self.requests.append(Request(body, headers))
            try:
                payload = self.check(body, headers)
            except WebhookVerificationError as exc:
                self.rejected.append(str(exc))
                return 400
            if 200 <= self.answer < 300:
                msg_id = {k.lower(): v for k, v in headers.items()}["webhook-id"]
                self.received.append(msg_id)
                self.events.setdefault(msg_id, payload)
            return self.answer


def body_json(request: Request) -> Any:
    return json.loads(request.body)
