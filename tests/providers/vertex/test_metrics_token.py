"""`/metrics` behind VBP_METRICS_TOKEN: no or a wrong bearer token is 401 in Google's envelope; the right one is 200.
Unset, it stays open (the other metrics tests scrape it without a token)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.providers.vertex.conftest import Proxied, running
from tests.support.raw_http import raw_request

# Runs the emulator, a proxy or `vbp` processes: left out of `make test-fast`.
pytestmark = pytest.mark.slow

TOKEN = "metrics-token-7f3a9c"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    with running(Path(tmp_path_factory.mktemp("metrics")), metrics_token=TOKEN) as env:
        yield env


@pytest.mark.parametrize("authorization", [
    None, "", f"Basic {TOKEN}", "Bearer", "Bearer wrong", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}",
    f"Bearer {TOKEN.upper()}",
])
def test_without_the_token_metrics_are_401(guarded: Proxied, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    reply = raw_request(guarded.proxy.port, "GET", "/metrics", headers=headers)
    assert reply.status == 401
    assert reply.json() == {"error": {"code": 401, "status": "UNAUTHENTICATED",
                                      "message": "/metrics needs its bearer token (VBP_METRICS_TOKEN)."}}
    assert reply.headers["www-authenticate"] == 'Bearer realm="metrics"'
    assert b"vbp_" not in reply.body


def test_with_the_token_metrics_are_served(guarded: Proxied) -> None:
    reply = raw_request(guarded.proxy.port, "GET", "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/plain")
    assert b"\nvbp_ledger_up 1.0\n" in reply.body


def test_a_proxy_key_is_not_the_metrics_token(guarded: Proxied) -> None:
    reply = raw_request(guarded.proxy.port, "GET", "/metrics",
                        headers={"Authorization": f"Bearer {guarded.keys['team-a']}"})
    assert reply.status == 401


def test_unset_the_metrics_stay_open(proxied: Proxied) -> None:
    assert raw_request(proxied.proxy.port, "GET", "/metrics").status == 200
