"""The dashboard's session cookie: the key's id, a fingerprint of its stored hash and an expiry, signed with
HMAC-SHA256. Never the key itself, nor its hash.

    vbp_session = base64url({"k": key_id, "h": fingerprint, "e": expiry_unix}) "." base64url(HMAC(secret, payload))

The signature proves this process (or a replica sharing VBP_SESSION_SECRET) issued it. Each request still
looks the key up: revoking or expiring the key ends its sessions at once, and rotating it ends them when the
old secret's grace period does (the fingerprint is of the secret that signed in).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from proxy.ledger.models import ApiKey
from proxy.tenancy.keys import Principal

COOKIE_NAME = "vbp_session"
DEFAULT_MAX_AGE = 12 * 3600.0


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class SessionSigner:
    """Issues and checks session cookies with one secret (random per process when none is configured)."""

    secret: bytes
    max_age: float = DEFAULT_MAX_AGE

    def __repr__(self) -> str:  # the secret never reaches a log
        return f"SessionSigner(secret=***, max_age={self.max_age})"

    @classmethod
    def from_setting(cls, secret: str | None, max_age: float | None = None) -> SessionSigner:
        """From VBP_SESSION_SECRET; unset: 32 random bytes, so sessions end when the process does."""
        key = secret.encode() if secret else secrets.token_bytes(32)
        return cls(secret=key, max_age=max_age or DEFAULT_MAX_AGE)

    def _sign(self, payload: str) -> str:
        return _b64encode(hmac.new(self.secret, payload.encode("ascii"), hashlib.sha256).digest())

    def fingerprint(self, secret_hash: str) -> str:
        """A keyed digest of a key's stored hash: ties a session to the secret that signed in."""
        return self._sign("h:" + secret_hash)[:22]

    def issue(self, key_id: str, secret_hash: str, *, now: float | None = None) -> str:
        """A cookie value for the key `key_id` signed in with the secret whose hash is `secret_hash`."""
        expiry = int((time.time() if now is None else now) + self.max_age)
        body = json.dumps({"k": key_id, "h": self.fingerprint(secret_hash), "e": expiry}, separators=(",", ":"))
        payload = _b64encode(body.encode())
        return f"{payload}.{self._sign(payload)}"

    def read(self, value: str | None, *, now: float | None = None) -> SessionClaim | None:
        """What a valid, unexpired cookie says; None for anything else (tampered, expired, garbled)."""
        if not value or value.count(".") != 1:
            return None
        payload, signature = value.split(".")
        try:
            if not hmac.compare_digest(self._sign(payload), signature):
                return None
            body = json.loads(_b64decode(payload))
        except (ValueError, UnicodeError, binascii.Error):
            return None
        if not isinstance(body, dict) or not all(isinstance(body.get(f), t) for f, t in (("k", str), ("h", str),
                                                                                         ("e", int))):
            return None
        if body["e"] <= (time.time() if now is None else now):
            return None
        return SessionClaim(key_id=body["k"], fingerprint=body["h"])

    def principal(self, session: Session, claim: SessionClaim, *, now: datetime) -> Principal | None:
        """The claim's key if it is still live and still has the secret that signed in (blocking: a query)."""
        key = session.get(ApiKey, claim.key_id)
        if key is None or key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= now):
            return None
        if hmac.compare_digest(self.fingerprint(key.secret_hash), claim.fingerprint):
            return Principal.of(key)
        graced = key.previous_valid_until is not None and key.previous_valid_until > now
        if key.previous_hash and graced and hmac.compare_digest(self.fingerprint(key.previous_hash),
                                                                claim.fingerprint):
            return Principal.of(key)
        return None


@dataclass(frozen=True)
class SessionClaim:
    """What a valid cookie says: the key's id and the fingerprint of the secret that signed in."""

    key_id: str
    fingerprint: str
