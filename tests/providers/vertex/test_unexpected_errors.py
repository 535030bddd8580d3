"""An error nobody foresaw (here: a ledger table gone from under a running proxy) is a 500 INTERNAL in Google's
envelope on the admin and report routes, logged exactly once with its traceback."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from proxy.tenancy.keys import create_key
from tests.providers.vertex.conftest import Proxied, running
from tests.support.raw_http import raw_request

# Runs the emulator, a proxy or `vbp` processes: left out of `make test-fast`.
pytestmark = pytest.mark.slow


@pytest.fixture
def broken(tmp_path: Path) -> Iterator[Proxied]:
    with running(tmp_path) as env:
        with env.sessions.begin() as session:
            key, secret = create_key(session, team="platform", name="admin", admin=True)
            env.keys["admin"], env.key_ids["admin"] = secret, key.id
        yield env


@pytest.mark.parametrize(("table", "method", "target", "body", "logger"), [
    ("key_events", "POST", "/v1/keys", b'{"team": "t"}', "proxy.gateway"),
    ("job_rollups", "GET", "/v1/costs?by=team", b"", "proxy.gateway"),
])
def test_an_unexpected_error_is_a_logged_500_in_the_envelope(broken: Proxied, caplog: pytest.LogCaptureFixture,
                                                             table: str, method: str, target: str, body: bytes,
                                                             logger: str) -> None:
    assert raw_request(broken.proxy.port, "GET", "/v1/keys", headers={
        "Authorization": f"Bearer {broken.keys['admin']}"}).status == 200  # the key is cached: auth still works
    with broken.sessions.begin() as session:
        session.execute(text(f"DROP TABLE {table}"))
    caplog.clear()
    with caplog.at_level(logging.INFO):
        reply = raw_request(broken.proxy.port, method, target, body=body,
                            headers={"Authorization": f"Bearer {broken.keys['admin']}",
                                     "Content-Type": "application/json"})
    assert reply.status == 500
    assert reply.json() == {"error": {"code": 500, "status": "INTERNAL",
                                      "message": "The proxy failed to handle this request."}}
    records = [r for r in caplog.records if r.name.startswith("proxy")]
    assert [(r.name, r.levelname) for r in records] == [(logger, "ERROR")], [r.getMessage() for r in records]
    assert records[0].exc_info is not None and f"no such table: {table}" in str(records[0].exc_info[1])
