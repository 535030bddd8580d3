"""Fixtures of the upstream tests: the loopback stub, a service account pointed at it, and both upstreams."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.oauth2 import service_account

from proxy.upstream import AiohttpUpstream, HttpxUpstream, RetryPolicy, Upstream
from proxy.upstream.google_credentials import CLOUD_PLATFORM, GoogleAuth, TokenSource
from tests.upstream.stub import StubServer

# Short pauses so retry tests stay fast; Retry-After tests set their own.
FAST_RETRY = RetryPolicy(attempts=4, max_seconds=5.0, base_delay=0.01, max_delay=0.05)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def _stub_server() -> Iterator[StubServer]:
    server = StubServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def stub(_stub_server: StubServer) -> StubServer:
    """The stub upstream and token endpoint, with counters cleared."""
    _stub_server.reset()
    return _stub_server


@pytest.fixture(scope="session")
def service_account_info(_stub_server: StubServer) -> dict[str, Any]:
    """A real service-account key whose token_uri is the stub's token endpoint."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return {
        "type": "service_account", "project_id": "stub-project", "private_key_id": "stub-key-1",
        "private_key": pem, "client_email": "vbp-proxy@stub-project.iam.gserviceaccount.com",
        "client_id": "1234567890", "token_uri": f"{_stub_server.url}/token",
    }


@pytest.fixture
def service_account_file(service_account_info: dict[str, Any], tmp_path: Path) -> Path:
    path = tmp_path / "service-account.json"
    path.write_text(json.dumps(service_account_info))
    return path


@pytest.fixture
def make_tokens(service_account_info: dict[str, Any]) -> Iterator[Callable[..., TokenSource]]:
    """Build TokenSources over real google-auth service-account credentials; closed after the test."""
    made: list[TokenSource] = []

    def make(*, margin: float = 300.0) -> TokenSource:
        credentials = service_account.Credentials.from_service_account_info(service_account_info,
                                                                            scopes=[CLOUD_PLATFORM])
        source = TokenSource(credentials, margin=margin)
        made.append(source)
        return source

    yield make
    for source in made:
        source.close()


@pytest.fixture(params=["aiohttp", "httpx"])
async def make_upstream(request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., Upstream]]:
    """Build the upstream under test (each kind in turn); closed after the test."""
    made: list[Upstream] = []

    def make(*, tokens: TokenSource | None = None, timeout: float = 5.0, connect_timeout: float = 2.0,
             retry: RetryPolicy = FAST_RETRY) -> Upstream:
        upstream: Upstream
        if request.param == "aiohttp":
            upstream = AiohttpUpstream(tokens=tokens, timeout=timeout, connect_timeout=connect_timeout, retry=retry)
        else:
            upstream = HttpxUpstream(auth=GoogleAuth(tokens) if tokens else None, timeout=timeout,
                                     connect_timeout=connect_timeout, retry=retry)
        made.append(upstream)
        return upstream

    yield make
    for upstream in made:
        await upstream.aclose()
