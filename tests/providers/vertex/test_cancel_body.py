"""A cancel's body is read within VBP_MAX_BODY_BYTES and must be empty or `{}`: nothing else reaches Vertex."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from proxy.ledger.models import Job
from tests.providers.vertex.conftest import LOCATION, Proxied
from tests.providers.vertex.test_bad_input import GOOD_BODY
from tests.support.raw_http import raw_request

# Runs the emulator, a proxy or `vbp` processes: left out of `make test-fast`.
pytestmark = pytest.mark.slow

JOBS = f"/v1/projects/your-project/locations/{LOCATION}/batchPredictionJobs"


def new_job(proxied: Proxied) -> str:
    reply = raw_request(proxied.proxy.port, "POST", JOBS, body=GOOD_BODY, headers=_headers(proxied))
    assert reply.status == 200, reply.body
    return str(reply.json()["name"])


def _headers(proxied: Proxied) -> dict[str, str]:
    return {"Authorization": f"Bearer {proxied.keys['team-a']}", "Content-Type": "application/json"}


def _cancel(proxied: Proxied, name: str, body: bytes):  # type: ignore[no-untyped-def]
    return raw_request(proxied.proxy.port, "POST", f"{JOBS}/{name.rsplit('/', 1)[-1]}:cancel", body=body,
                       headers=_headers(proxied))


@pytest.mark.parametrize(("body", "status", "words"), [
    (b'{"x": 1}', 400, "The cancel request body must be empty or {}."),
    (b'{"name": "projects/p/locations/l/batchPredictionJobs/1"}', 400, "The cancel request body must be empty or {}."),
    (b"[]", 400, "The cancel request body must be empty or {}."),
    (b"null", 400, "The cancel request body must be empty or {}."),
    (b'"{}"', 400, "The cancel request body must be empty or {}."),
    (b"{}{}", 400, "Invalid JSON payload received: Extra data"),
    (b"{", 400, "Invalid JSON payload received: brackets that do not balance"),
    (b"[" * 10_000, 400, "Invalid JSON payload received: brackets that do not balance"),
    (b"{" + b" " * (1024 * 1024) + b"}", 413, "The request body is larger than 1048576 bytes."),
])
def test_a_cancel_body_other_than_empty_or_braces_is_refused(proxied: Proxied, body: bytes, status: int,
                                                             words: str) -> None:
    name = new_job(proxied)
    before = len(proxied.emulator_calls())
    reply = _cancel(proxied, name, body)
    assert reply.status == status, reply.body
    assert reply.json()["error"]["message"].startswith(words), reply.body
    assert reply.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert len(proxied.emulator_calls()) == before
    with proxied.sessions() as session:
        assert session.scalars(select(Job.cancel_requested_at).where(Job.name == name)).one() is None


@pytest.mark.parametrize(("body", "forwarded"), [(b"", ""), (b"{}", "{}"), (b" \r\n{ \t}\n ", "{}")])
def test_an_empty_body_or_braces_go_on_to_vertex(proxied: Proxied, body: bytes, forwarded: str) -> None:
    name = new_job(proxied)
    reply = _cancel(proxied, name, body)
    if reply.status != 200:  # the job may have ended already: then Vertex refuses, having read the cancel
        assert (reply.status, reply.json()["error"]["status"]) == (400, "FAILED_PRECONDITION"), reply.body
    sent = proxied.emulator_calls()[-1]
    assert (sent["method"], sent["path"].endswith(":cancel"), sent["body"]) == ("POST", True, forwarded)
