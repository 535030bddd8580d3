"""The emulator's Google identity: a generated service account and the OAuth2 token endpoint that trusts it.

`POST /token` takes the JWT-bearer grant google-auth sends (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`,
`assertion=<RS256 JWT>`), checks the signature against the generated key and the `iss`/`aud`/`iat`/`exp`
claims, and answers an expiring access token. The Vertex API accepts those tokens and, as Google does,
self-signed JWTs of the same service account (what google-cloud-aiplatform sends with service-account
credentials, never calling the token endpoint).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
MAX_ASSERTION_LIFETIME = 3600
CLOCK_SKEW = 60


class OAuthError(Exception):
    """A refused grant, answered as `{"error": ..., "error_description": ...}` like Google's token endpoint."""

    def __init__(self, error: str, description: str, *, http_status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.http_status = http_status

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


@dataclass(frozen=True)
class ServiceAccount:
    """A service account whose key the emulator generated and trusts."""

    private_key: rsa.RSAPrivateKey
    key_id: str
    client_email: str
    client_id: str
    project_id: str
    token_uri: str

    @classmethod
    def generate(cls, *, token_uri: str, project_id: str = "vbp-emulator") -> ServiceAccount:
        """A fresh RSA key and identity."""
        return cls(private_key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
                   key_id=secrets.token_hex(20), client_email=f"batch-proxy@{project_id}.iam.gserviceaccount.com",
                   client_id=str(10**20 + secrets.randbelow(9 * 10**20)), project_id=project_id,
                   token_uri=token_uri)

    def info(self) -> dict[str, str]:
        """The service-account JSON document, as the Cloud console downloads it."""
        pem = self.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()).decode()
        return {
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": self.key_id,
            "private_key": pem,
            "client_email": self.client_email,
            "client_id": self.client_id,
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": "",
            "universe_domain": "googleapis.com",
        }

    def write(self, path: Path) -> None:
        """Write the JSON file, readable by its owner only (it holds a private key)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600, exist_ok=True)
        path.write_text(json.dumps(self.info(), indent=2))

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a JWT signed with RS256 by this account's key; OAuthError when it is not."""
        parts = token.split(".")
        if len(parts) != 3:
            raise OAuthError("invalid_grant", "Invalid JWT: not a compact JWS.")
        try:
            header = json.loads(_unb64(parts[0]))
            claims = json.loads(_unb64(parts[1]))
            signature = _unb64(parts[2])
        except (ValueError, binascii.Error):
            raise OAuthError("invalid_grant", "Invalid JWT: malformed segments.") from None
        if not isinstance(header, dict) or header.get("alg") != "RS256" or not isinstance(claims, dict):
            raise OAuthError("invalid_grant", "Invalid JWT: the algorithm must be RS256.")
        if header.get("kid", self.key_id) != self.key_id:
            raise OAuthError("invalid_grant", "Invalid JWT Signature.")
        try:
            self.private_key.public_key().verify(signature, f"{parts[0]}.{parts[1]}".encode(),
                                                 padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise OAuthError("invalid_grant", "Invalid JWT Signature.") from None
        if claims.get("iss") != self.client_email:
            raise OAuthError("invalid_grant", "Invalid JWT: the issuer is not this service account.")
        return claims


def _unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _check_times(claims: Mapping[str, Any], now: float, *, skew: float = CLOCK_SKEW) -> None:
    iat, exp = claims.get("iat"), claims.get("exp")
    if (not isinstance(iat, int | float) or not isinstance(exp, int | float) or exp <= now - skew
            or iat > now + CLOCK_SKEW or exp - iat > MAX_ASSERTION_LIFETIME + CLOCK_SKEW):
        raise OAuthError("invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
                                          "reasonable timeframe. Check your iat and exp values in the JWT claim.")


class TokenIssuer:
    """Issues and checks the emulator's access tokens."""

    def __init__(self, account: ServiceAccount, *, lifetime: int = 3600) -> None:
        self.account = account
        self.lifetime = lifetime
        self._tokens: dict[str, float] = {}
        self._lock = threading.Lock()

    def issue(self, lifetime: float | None = None) -> str:
        """A new access token that expires `lifetime` seconds from now (the configured lifetime by default)."""
        token = "ya29.emu-" + secrets.token_urlsafe(32)
        now = time.time()
        with self._lock:
            self._tokens = {t: exp for t, exp in self._tokens.items() if exp > now}
            self._tokens[token] = now + (self.lifetime if lifetime is None else lifetime)
        return token

    def exchange(self, form: Mapping[str, str]) -> dict[str, Any]:
        """Answer a JWT-bearer grant with `{"access_token", "expires_in", "token_type"}`."""
        if form.get("grant_type") != JWT_BEARER:
            raise OAuthError("unsupported_grant_type", f"Invalid grant_type: {form.get('grant_type', '')}")
        assertion = form.get("assertion")
        if not assertion:
            raise OAuthError("invalid_request", "Missing required parameter: assertion")
        claims = self.account.verify(assertion)
        audience = claims.get("aud")
        if audience not in (self.account.token_uri, GOOGLE_TOKEN_URI):
            raise OAuthError("invalid_grant", "Invalid JWT: Failed audience check.")
        _check_times(claims, time.time())
        return {"access_token": self.issue(), "expires_in": self.lifetime, "token_type": "Bearer"}

    def valid(self, token: str) -> bool:
        """Whether a bearer token is one of ours and unexpired, or a valid self-signed JWT of our account."""
        with self._lock:
            expiry = self._tokens.get(token)
        if expiry is not None:
            return expiry > time.time()
        if token.count(".") != 2:
            return False
        try:
            claims = self.account.verify(token)
            _check_times(claims, time.time(), skew=0)
        except OAuthError:
            return False
        return claims.get("sub", self.account.client_email) == self.account.client_email
