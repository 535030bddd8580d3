"""Standard Webhooks signatures, made by the reference library (`standardwebhooks.Webhook.sign`, no dependencies):
HMAC-SHA256 with the endpoint's `whsec_` secret over `{webhook-id}.{webhook-timestamp}.{body}`."""

from __future__ import annotations

import base64
import secrets
from datetime import datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """A fresh signing secret: `whsec_` and 32 random bytes in base64 (Standard Webhooks' format)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signed_headers(secret: str, *, message_id: str, at: datetime, body: str) -> dict[str, str]:
    """The three headers of one delivery attempt of `body` (the same `message_id` on every retry)."""
    return {"webhook-id": message_id, "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": Webhook(secret).sign(message_id, at, body)}
