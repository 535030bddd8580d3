"""Bad requests get a clear error in Google's envelope, and none of them reaches Vertex."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from proxy.ledger.models import Job
from proxy.tenancy.keys import create_key, revoke_key
from tests.providers.vertex.conftest import LOCATION, Proxied
from tests.support.raw_http import raw_request

# Runs the emulator, a proxy or `vbp` processes: left out of `make test-fast`.
pytestmark = pytest.mark.slow

P = "your-project"
JOBS = f"/v1/projects/{P}/locations/{LOCATION}/batchPredictionJobs"
GOOD_BODY = json.dumps({"displayName": "x", "model": "publishers/google/models/gemini-2.5-flash",
                        "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": ["gs://bad-input/i.jsonl"]}},
                        "outputConfig": {"predictionsFormat": "jsonl",
                                         "gcsDestination": {"outputUriPrefix": "gs://bad-input/o/"}}}).encode()

# (case, method, target, body, expected HTTP status, expected Google status)
CASES = [
    ("unknown route", "GET", "/v1/projects/your-project/locations/us-central1/endpoints", b"", 404, "NOT_FOUND"),
    ("unknown top-level path", "GET", "/admin", b"", 404, "NOT_FOUND"),
    ("other API version", "GET", f"/v2/projects/{P}/locations/{LOCATION}/batchPredictionJobs", b"", 404, "NOT_FOUND"),
    ("dot-dot segments", "GET", f"/v1/projects/{P}/locations/{LOCATION}/../../endpoints", b"", 400,
     "INVALID_ARGUMENT"),
    ("encoded dot-dot", "GET", f"/v1/projects/{P}/locations/{LOCATION}/batchPredictionJobs/%2e%2e", b"", 400,
     "INVALID_ARGUMENT"),
    ("encoded slash", "GET", f"/v1/projects/{P}%2Flocations%2Fx/locations/{LOCATION}/batchPredictionJobs", b"",
     400, "INVALID_ARGUMENT"),
    ("backslash", "GET", f"/v1/projects/{P}/locations/{LOCATION}\\/batchPredictionJobs", b"", 400,
     "INVALID_ARGUMENT"),
    ("location with a fragment", "GET", f"/v1/projects/{P}/locations/evil.com#/batchPredictionJobs", b"", 400,
     "INVALID_ARGUMENT"),
    ("location moving the host", "GET", f"/v1/projects/{P}/locations/us-central1.evil.com/batchPredictionJobs",
     b"", 400, "INVALID_ARGUMENT"),
    ("location with userinfo", "GET", f"/v1/projects/{P}/locations/x@y/batchPredictionJobs", b"", 400,
     "INVALID_ARGUMENT"),
    ("absolute-form target", "GET", f"http://evil.com{JOBS}", b"", 400, "INVALID_ARGUMENT"),
    ("oversize path", "GET", f"{JOBS}/" + "1" * 3000, b"", 400, "INVALID_ARGUMENT"),
    ("non-numeric job id", "GET", f"{JOBS}/abc", b"", 400, "INVALID_ARGUMENT"),
    ("unknown action", "POST", f"{JOBS}/123:pause", b"", 404, "NOT_FOUND"),
    ("wrong method on the collection", "PUT", JOBS, GOOD_BODY, 405, "UNIMPLEMENTED"),
    ("wrong method on a job", "POST", f"{JOBS}/123", b"{}", 405, "UNIMPLEMENTED"),
    ("malformed JSON", "POST", JOBS, b'{"displayName": ', 400, "INVALID_ARGUMENT"),
    ("JSON that is not an object", "POST", JOBS, b"[1, 2]", 400, "INVALID_ARGUMENT"),
    ("reserved label", "POST", JOBS, json.dumps({**json.loads(GOOD_BODY), "labels": {"vbp-team": "b"}}).encode(),
     400, "INVALID_ARGUMENT"),
    ("oversize body", "POST", JOBS, b'{"displayName": "' + b"x" * (1024 * 1024 + 10) + b'"}', 413,
     "INVALID_ARGUMENT"),
]


@pytest.mark.parametrize(("case", "method", "target", "body", "status", "google_status"), CASES,
                         ids=[c[0] for c in CASES])
def test_bad_request_is_refused_before_vertex(proxied: Proxied, case: str, method: str, target: str, body: bytes,
                                              status: int, google_status: str) -> None:
    before = len(proxied.emulator_calls())
    with proxied.sessions() as session:
        jobs_before = session.scalar(select(func.count(Job.id)))
    reply = raw_request(proxied.proxy.port, method, target, body=body,
                        headers={"Authorization": f"Bearer {proxied.keys['team-a']}",
                                 "Content-Type": "application/json"})
    assert reply.status == status, reply.body
    error = reply.json()["error"]
    assert error["code"] == status and error["status"] == google_status and error["message"]
    assert len(proxied.emulator_calls()) == before, f"{case} reached the emulator"
    with proxied.sessions() as session:
        assert session.scalar(select(func.count(Job.id))) == jobs_before


def _revoked_key(proxied: Proxied) -> str:
    with proxied.sessions.begin() as session:
        key, secret = create_key(session, team="team-a")
        revoke_key(session, key_id=key.id)
    return secret


@pytest.mark.parametrize("who", ["none", "unknown", "revoked", "basic-scheme", "empty-bearer"])
def test_missing_or_bad_key_is_401(proxied: Proxied, who: str) -> None:
    headers = {
        "none": {},
        "unknown": {"Authorization": "Bearer vbp_" + "A" * 43},
        "revoked": {"Authorization": f"Bearer {_revoked_key(proxied)}"},
        "basic-scheme": {"Authorization": f"Basic {proxied.keys['team-a']}"},
        "empty-bearer": {"Authorization": "Bearer "},
    }[who]
    before = len(proxied.emulator_calls())
    reply = raw_request(proxied.proxy.port, "GET", JOBS, headers=headers)
    assert reply.status == 401
    assert reply.json()["error"]["status"] == "UNAUTHENTICATED"
    assert len(proxied.emulator_calls()) == before


def test_x_goog_api_key_header_is_accepted_and_not_forwarded(proxied: Proxied) -> None:
    reply = raw_request(proxied.proxy.port, "GET", JOBS, headers={"x-goog-api-key": proxied.keys["team-a"]})
    assert reply.status == 200
    last = proxied.emulator_calls()[-1]
    assert "x-goog-api-key" not in last["headers"]  # type: ignore[operator]
    assert proxied.keys["team-a"] not in json.dumps(last)
