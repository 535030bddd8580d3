"""The request id: a caller's well-formed `x-request-id` is kept, otherwise a fresh one; echoed on every route,
and passed on to Vertex."""

from __future__ import annotations

import re

import pytest

from proxy.gateway.request_id import new_request_id
from tests.gateway.conftest import COLLECTION
from tests.providers.vertex.conftest import Proxied
from tests.support.raw_http import raw_request

FRESH = re.compile(r"[0-9a-f]{32}")
# One target per kind of route: the native door, the admin APIs, the reports, metrics, health, and no route.
TARGETS = [COLLECTION, f"{COLLECTION}/123456", "/v1/keys", "/v1/teams", "/v1/costs", "/dashboard", "/metrics",
           "/healthz", "/readyz", "/no/such/route"]


def test_a_sane_caller_id_is_kept_and_anything_else_replaced() -> None:
    assert new_request_id([("X-Request-Id", "trace-1234-abcd")]) == "trace-1234-abcd"
    assert new_request_id([("x-request-id", "a" * 40)]) == "a" * 40
    for bad in ("bad id\r\nx-injected: 1", "short", "a" * 41, "caf\u00e9-1234"):
        fresh = new_request_id([("x-request-id", bad)])
        assert FRESH.fullmatch(fresh), fresh
    assert new_request_id() != new_request_id()


@pytest.mark.parametrize("target", TARGETS)
def test_the_callers_id_is_echoed_on_every_route(gateway: Proxied, target: str) -> None:
    with gateway.client("admin") as client:
        reply = client.get(target, headers={"X-Request-Id": "caller-trace-0001"})
    assert reply.headers.get_list("x-request-id") == ["caller-trace-0001"]  # once, whoever answered


@pytest.mark.parametrize("target", TARGETS)
def test_a_fresh_id_is_made_for_a_bad_or_missing_one(gateway: Proxied, target: str) -> None:
    given = raw_request(gateway.proxy.port, "GET", target, headers={"X-Request-Id": "no good"})
    missing = raw_request(gateway.proxy.port, "GET", target)
    assert FRESH.fullmatch(given.headers["x-request-id"])
    assert FRESH.fullmatch(missing.headers["x-request-id"])
    assert given.headers["x-request-id"] != missing.headers["x-request-id"]


def test_vertex_receives_the_same_id(gateway: Proxied) -> None:
    gateway.stack.reset()
    kept = raw_request(gateway.proxy.port, "GET", COLLECTION, headers={
        "Authorization": f"Bearer {gateway.keys['team-a']}", "X-Request-Id": "caller-trace-0002"})
    made = raw_request(gateway.proxy.port, "GET", COLLECTION, headers={
        "Authorization": f"Bearer {gateway.keys['team-a']}"})
    assert (kept.status, made.status) == (200, 200)
    sent = [call["headers"] for call in gateway.emulator_calls()]
    assert [dict(headers)["x-request-id"] for headers in sent] == ["caller-trace-0002", made.headers["x-request-id"]]
