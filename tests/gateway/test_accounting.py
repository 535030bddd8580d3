"""Exactly one request-log row and one metrics observation per request, on every kind of route, enriched by the
route that answered (its name, the key, the team, the upstream's status, the error)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select

from proxy.ledger.models import RequestLog
from proxy.services import Services
from tests.gateway.conftest import COLLECTION
from tests.providers.vertex.conftest import Proxied

# who (a key, or none), method, target, expected route, status, upstream status, error
CASES: list[tuple[str | None, str, str, str, int, int | None, str | None]] = [
    ("team-a", "GET", COLLECTION, "list", 200, 200, None),
    ("team-a", "GET", f"{COLLECTION}/123456", "get", 404, None, "NOT_FOUND"),
    (None, "GET", COLLECTION, "list", 401, None, "UNAUTHENTICATED"),
    ("team-a", "GET", "/v1/projects/x/locations/us-central1/models", "unmatched", 404, None, "NOT_FOUND"),
    ("admin", "GET", "/v1/keys", "keys.list", 200, None, None),
    ("team-a", "GET", "/v1/keys", "keys.list", 403, None, "PERMISSION_DENIED"),
    ("admin", "GET", "/v1/teams", "teams.list", 200, None, None),
    ("team-a", "GET", "/v1/costs", "costs", 200, None, None),
    (None, "GET", "/v1/costs", "costs", 401, None, "UNAUTHENTICATED"),
    ("team-a", "GET", "/v1/costs?format=xml", "costs", 400, None, "INVALID_ARGUMENT"),
    (None, "GET", "/dashboard", "dashboard", 200, None, None),
    (None, "GET", "/metrics", "metrics", 200, None, None),
    (None, "GET", "/healthz", "healthz", 200, None, None),
    (None, "GET", "/readyz", "readyz", 200, None, None),
    (None, "GET", "/no/such/route", "unmatched", 404, None, "NOT_FOUND"),
    (None, "DELETE", "/healthz", "unmatched", 404, None, "NOT_FOUND"),
]


def _services(env: Proxied) -> Services:
    services = env.proxy.app.services
    assert services is not None
    return services


def _observed(services: Services, route: str, status: int) -> tuple[float, float]:
    registry = services.metrics.registry
    return (registry.get_sample_value("vbp_requests_total", {"route": route, "status": str(status)}) or 0.0,
            registry.get_sample_value("vbp_request_seconds_count", {"route": route}) or 0.0)


def _rows_of(env: Proxied, request_id: str) -> list[RequestLog]:
    deadline = time.monotonic() + 5
    while True:
        _services(env).request_log.wait_written()
        with env.sessions() as session:
            rows = list(session.scalars(select(RequestLog).where(RequestLog.request_id == request_id)))
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.02)


@pytest.mark.parametrize(("who", "method", "target", "route", "status", "upstream", "error"), CASES)
def test_one_row_and_one_observation_per_request(gateway: Proxied, who: str | None, method: str, target: str,
                                                 route: str, status: int, upstream: int | None,
                                                 error: str | None) -> None:
    services = _services(gateway)
    request_id = f"accounting-{len(target):03d}-{route}-{status}-{who}"[:40]
    before = _observed(services, route, status)
    headers = {"X-Request-Id": request_id}
    if who is not None:
        headers["Authorization"] = f"Bearer {gateway.keys[who]}"
    with gateway.client() as client:
        reply = client.request(method, target, headers=headers | ({} if who else {"Authorization": ""}))
    assert reply.status_code == status, reply.text
    rows = _rows_of(gateway, request_id)  # the record is written (and counted first) just after the reply
    assert services.request_log.wait_written()
    after = _observed(services, route, status)
    assert (after[0] - before[0], after[1] - before[1]) == (1.0, 1.0)
    assert len(rows) == 1 and len(_rows_of(gateway, request_id)) == 1
    row: Any = rows[0]
    key_id = gateway.key_ids[who] if who is not None and route not in ("dashboard", "metrics", "healthz",
                                                                        "readyz", "unmatched") else None
    team = {"team-a": "team-a", "admin": "platform"}.get(who or "") if key_id else None
    assert (row.method, row.route, row.status, row.upstream_status, row.error, row.key_id, row.team) == (
        method, route, status, upstream, error, key_id, team)
    assert row.api_version == ("v1" if route in ("list", "get") else None)
