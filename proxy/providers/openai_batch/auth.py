"""How the proxy signs its calls to a deployment (`httpx.Auth`): OpenAI's bearer key, Azure's `api-key` header, or
a Microsoft Entra ID bearer token from `azure-identity`.

Keys come from the env var the catalog names, read through `proxy.settings.deployment_secret`. Entra tokens are
cached until a few minutes before they expire; one refresh runs at a time, the other requests wait for it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Generator
from typing import Any, Protocol

import httpx

from proxy.catalog.deployment import AUTH_ENTRA, Deployment
from proxy.settings import deployment_secret

ENTRA_SCOPE = "https://cognitiveservices.azure.com/.default"
REFRESH_MARGIN = 300.0  # seconds before expiry a token is refreshed


class BearerKey(httpx.Auth):
    """`Authorization: Bearer KEY` (OpenAI)."""

    def __init__(self, key: str) -> None:
        self._key = key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._key}"
        yield request

    def __repr__(self) -> str:
        return "BearerKey(********)"


class AzureKey(httpx.Auth):
    """`api-key: KEY` (Azure OpenAI)."""

    def __init__(self, key: str) -> None:
        self._key = key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["api-key"] = self._key
        yield request

    def __repr__(self) -> str:
        return "AzureKey(********)"


class TokenCredential(Protocol):
    """azure-identity's async credentials (`azure.identity.aio.DefaultAzureCredential` and kin)."""

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any: ...


class EntraToken(httpx.Auth):
    """A bearer token from an Entra ID credential, cached; one refresh at a time."""

    def __init__(self, credential: TokenCredential, *, scope: str = ENTRA_SCOPE) -> None:
        self._credential = credential
        self._scope = scope
        self._token: str | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()
        self.refreshes = 0

    async def token(self) -> str:
        """The cached token, refreshed first when it is within REFRESH_MARGIN of its expiry."""
        if self._token is not None and time.time() < self._expires - REFRESH_MARGIN:
            return self._token
        async with self._lock:
            if self._token is None or time.time() >= self._expires - REFRESH_MARGIN:  # not refreshed meanwhile
                access = await self._credential.get_token(self._scope)
                self._token, self._expires = str(access.token), float(access.expires_on)
                self.refreshes += 1
        return self._token

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("Entra tokens are fetched asynchronously: use an httpx.AsyncClient")
        yield request  # pragma: no cover

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        request.headers["Authorization"] = f"Bearer {await self.token()}"
        yield request


def _default_credential() -> TokenCredential:
    try:
        from azure.identity.aio import DefaultAzureCredential
    except ImportError as exc:  # the optional extra is not installed
        raise RuntimeError("auth = \"entra\" needs azure-identity: pip install 'vertex-batch-proxy[azure]'") from exc
    return DefaultAzureCredential()


def deployment_auth(deployment: Deployment, *, credential: TokenCredential | None = None) -> httpx.Auth:
    """The auth a deployment's calls carry (MissingSecret when its key's env var is unset)."""
    if deployment.provider == "azure":
        if deployment.auth == AUTH_ENTRA:
            return EntraToken(credential or _default_credential())
        return AzureKey(deployment_secret(deployment.api_key_env))
    return BearerKey(deployment_secret(deployment.api_key_env))
