"""Who is calling: the proxy key from `Authorization: Bearer`, `x-goog-api-key` (Google's SDKs) or `api-key` (Azure
OpenAI's clients, on the OpenAI door), resolved to a Principal."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from proxy.errors import Unauthenticated
from proxy.tenancy.keys import Principal

if TYPE_CHECKING:
    from proxy.services import Services


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` value; None for any other scheme, or none."""
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def key_from(headers: Iterable[tuple[str, str]]) -> str | None:
    """The caller's key, if it sent one (a Bearer token, else x-goog-api-key or api-key, as they come)."""
    for name, value in headers:
        name = name.lower()
        if name == "authorization":
            token = bearer_token(value)
            if token:
                return token
        elif name in ("x-goog-api-key", "api-key") and value.strip():
            return value.strip()
    return None


async def authenticate(services: Services, headers: Iterable[tuple[str, str]]) -> Principal:
    """The live key's Principal, or Unauthenticated (401). A cache hit never leaves the event loop."""
    secret = key_from(headers)
    if not secret:
        raise Unauthenticated("Request is missing a proxy API key (Authorization: Bearer vbp_..., x-goog-api-key or "
                              "api-key).")
    keys = services.keys
    hit, principal = keys.cached(secret)
    if not hit:
        principal = await keys.lookup_shared(secret)
    if principal is None:
        raise Unauthenticated("The API key is not valid: unknown, revoked or expired.")
    return principal
