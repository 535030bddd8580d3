"""Google credentials injected by the proxy: fetched once, refreshed when they expire, never shown to anyone."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select, text

from proxy.ledger.models import RequestLog
from tests.providers.vertex.conftest import LOCATION, Proxied, running

# Runs the emulator, a proxy or `vbp` processes: left out of `make test-fast`.
pytestmark = pytest.mark.slow

JOBS = f"/v1/projects/cred-project/locations/{LOCATION}/batchPredictionJobs"


@pytest.fixture
def short_lived(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    """A fresh proxy (no token fetched yet) before an emulator whose tokens live 4 seconds."""
    with running(tmp_path_factory.mktemp("creds"), token_lifetime=4) as env:
        yield env


def _token_calls(env: Proxied) -> list[dict[str, object]]:
    return [e for e in env.stack.request_log if e.get("api") == "token"]


def test_one_token_fetch_serves_100_concurrent_requests(short_lived: Proxied) -> None:
    async def burst() -> list[int]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=short_lived.proxy.url, limits=limits, timeout=60,
                                     headers={"Authorization": f"Bearer {short_lived.keys['team-a']}"}) as client:
            replies = await asyncio.gather(*(client.get(JOBS) for _ in range(100)))
        return [r.status_code for r in replies]

    assert asyncio.run(burst()) == [200] * 100
    assert len(_token_calls(short_lived)) == 1
    assert len(short_lived.emulator_calls()) == 100


def test_an_expiring_token_is_refreshed(short_lived: Proxied) -> None:
    with short_lived.client() as client:
        assert client.get(JOBS).status_code == 200
        first = short_lived.emulator_calls()[-1]["headers"]["authorization"]  # type: ignore[index]
        time.sleep(4.2)  # past the token's whole life
        assert client.get(JOBS).status_code == 200
        second = short_lived.emulator_calls()[-1]["headers"]["authorization"]  # type: ignore[index]
    assert len(_token_calls(short_lived)) == 2
    assert first != second


def test_tokens_and_keys_stay_where_they_belong(short_lived: Proxied, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    key = short_lived.keys["team-a"]
    with short_lived.client() as client:
        replies = [client.get(JOBS), client.get(f"{JOBS}/1234567890123456789"), client.post(JOBS, json={})]
    google_header = str(short_lived.emulator_calls()[-1]["headers"]["authorization"])  # type: ignore[index]
    google_token = google_header.removeprefix("Bearer ")
    assert google_token and google_token != key
    for reply in replies:
        assert google_token not in reply.text and google_token not in json.dumps(dict(reply.headers))
    assert google_token not in caplog.text and key not in caplog.text
    # Nothing of the caller's credentials reached Vertex.
    assert key not in json.dumps(short_lived.stack.request_log)
    short_lived.proxy.app.services.request_log.wait_written(3)  # type: ignore[union-attr]
    with short_lived.sessions() as session:
        assert session.scalars(select(RequestLog)).first() is not None
        dump = json.dumps([list(map(str, row)) for row in session.execute(text("SELECT * FROM request_log"))])
    assert google_token not in dump and key not in dump
