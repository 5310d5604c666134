"""Standard Webhooks (https://www.standardwebhooks.com): secrets and the three signed headers."""

from __future__ import annotations

import base64
import datetime as dt
import secrets

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


def secret_generate() -> str:
    """A new signing secret: whsec_ and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def signed_headers(*, secret: str, msg_id: str, body: str, at: dt.datetime) -> dict[str, str]:
    """webhook-id, webhook-timestamp and webhook-signature for `body` sent at `at`.

    The id is the event's, the same on every attempt, so that receivers can drop duplicates; the
    timestamp is the attempt's, so that a retry hours later still passes the receiver's
    five-minute tolerance."""
    at_utc = at.astimezone(dt.UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at_utc.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at_utc, body),
    }
