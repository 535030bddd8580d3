"""No reply echoes the Host header, and a path with a trailing slash names nothing: 404 in Google's envelope, not a
redirect (Starlette would build one from whatever Host the caller sent)."""

from __future__ import annotations

import pytest

from tests.providers.vertex.conftest import LOCATION, Proxied
from tests.support.raw_http import raw_request

# Runs the emulator, a proxy or `vbp` processes: left out of `make test-fast`.
pytestmark = pytest.mark.slow

HOSTILE_HOST = "evil.example"
JOBS = f"/v1/projects/your-project/locations/{LOCATION}/batchPredictionJobs"


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/v1/keys/"), ("POST", "/v1/keys/"), ("GET", "/v1/costs/"), ("GET", "/healthz/"), ("GET", "/readyz/"),
    ("GET", "/metrics/"), ("GET", "/dashboard/"), ("POST", "/dashboard/login/"), ("GET", "/dashboard/costs.csv/"),
    ("GET", f"/v1/keys/{'k' * 12}/events/"),
    ("GET", f"{JOBS}/"), ("POST", f"{JOBS}/"), ("GET", f"{JOBS}/:cancel"), ("POST", f"{JOBS}/:cancel"),
])
def test_a_trailing_slash_is_404_in_the_envelope_and_never_a_redirect(proxied: Proxied, method: str,
                                                                      path: str) -> None:
    before = len(proxied.emulator_calls())
    reply = raw_request(proxied.proxy.port, method, path, host=HOSTILE_HOST,
                        headers={"Authorization": f"Bearer {proxied.keys['admin']}"})
    assert reply.status == 404, (reply.status, reply.headers, reply.body)
    assert "location" not in reply.headers
    assert HOSTILE_HOST.encode() not in reply.body
    error = reply.json()["error"]
    assert (error["code"], error["status"]) == (404, "NOT_FOUND") and error["message"]
    assert len(proxied.emulator_calls()) == before


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/dashboard/login", b"key=vbp_not-a-key"), ("POST", "/dashboard/logout", b""),
    ("GET", "/dashboard/costs.csv", b""), ("GET", "/nowhere", b""), ("GET", "/v1/keys", b""),
])
def test_no_reply_names_the_host_the_caller_sent(proxied: Proxied, method: str, path: str, body: bytes) -> None:
    reply = raw_request(proxied.proxy.port, method, path, host=HOSTILE_HOST, body=body,
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert HOSTILE_HOST not in reply.headers.get("location", "") and HOSTILE_HOST.encode() not in reply.body
    assert reply.headers.get("location", "/dashboard").startswith("/")
