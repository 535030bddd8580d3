"""Hostile JSON bodies (nested past MAX_DEPTH, NaN, Infinity, numbers that overflow) are a 400 in Google's
envelope on every route that reads a body: never a 500, never forwarded, and never more than one log line."""

from __future__ import annotations

import json
import logging

import pytest

from proxy.errors import InvalidArgument
from proxy.json_body import MAX_DEPTH, nesting_too_deep, parse_json_body
from tests.providers.vertex.conftest import LOCATION, Proxied
from tests.support.raw_http import raw_request

JOBS = f"/v1/projects/your-project/locations/{LOCATION}/batchPredictionJobs"


def nested(depth: int, *, closed: bool = True) -> bytes:
    """`{"a": {"a": ... [1] ...}}`, `depth` levels of objects and arrays in turn."""
    opens = "".join('{"a": ' if i % 2 == 0 else "[" for i in range(depth - 1)) + "["
    closes = "]" + "".join("}" if i % 2 == 0 else "]" for i in reversed(range(depth - 1)))
    return (opens + "1" + (closes if closed else "")).encode()


@pytest.mark.parametrize(("depth", "ok"), [(1, True), (MAX_DEPTH, True), (MAX_DEPTH + 1, False), (100_000, False)])
def test_depth_is_measured_exactly_and_without_recursion(depth: int, ok: bool) -> None:
    body = nested(depth)
    if depth < 500:
        json.loads(body)  # the builder makes real JSON
    assert nesting_too_deep(body, MAX_DEPTH) is (not ok)
    if ok:
        assert parse_json_body(body) == json.loads(body)
    else:
        with pytest.raises(InvalidArgument, match=f"nesting deeper than {MAX_DEPTH} levels"):
            parse_json_body(body)


@pytest.mark.parametrize("body", [
    b'{"s": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}',  # brackets in a string
    b'{"s": "\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\\\"}',  # escaped quotes
    b'[' + b'[],' * 10_000 + b'[]]',  # wide is fine
])
def test_brackets_in_strings_and_wide_documents_are_not_depth(body: bytes) -> None:
    assert parse_json_body(body) == json.loads(body)


@pytest.mark.parametrize(("body", "words"), [
    (b'{"a": NaN}', "NaN is not a number JSON allows"),
    (b'[Infinity]', "Infinity is not a number JSON allows"),
    (b'[-Infinity]', "-Infinity is not a number JSON allows"),
    (b'{"n": 1e999}', "the number 1e999 is out of range"),
    (b'{"n": -1e999}', "the number -1e999 is out of range"),
    (b'[' * 200, "brackets that do not balance"),  # unclosed: json would recurse to the end before failing
    (b'{"a": "\xff"}', "not UTF-8"),
    (b'{"a": }', "Expecting value"),
])
def test_what_json_is_not_is_refused(body: bytes, words: str) -> None:
    with pytest.raises(InvalidArgument, match=words):
        parse_json_body(body)


HOSTILE = {
    "deep": nested(10_000),  # ~40 KB: under the admin API's 64 KB limit too
    "deep-unclosed": nested(5_000, closed=False),
    "nan": b'{"displayName": "x", "labels": {}, "n": NaN}',
    "infinity": b'{"displayName": Infinity}',
    "minus-infinity": b'{"displayName": -Infinity}',
    "overflow": b'{"displayName": "x", "n": 1e999}',
}


def _admin(proxied: Proxied) -> dict[str, str]:
    return {"Authorization": f"Bearer {proxied.keys['admin']}", "Content-Type": "application/json"}


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(HOSTILE))
@pytest.mark.parametrize("route", ["create", "keys.create", "keys.rotate"])
def test_hostile_bodies_are_a_quiet_400_on_every_route(proxied: Proxied, caplog: pytest.LogCaptureFixture,
                                                       route: str, kind: str) -> None:
    target = {"create": JOBS, "keys.create": "/v1/keys",
              "keys.rotate": f"/v1/keys/{proxied.key_ids['team-b']}:rotate"}[route]
    body = HOSTILE[kind]
    if route == "keys.rotate":  # the one field rotate takes, with the hostile value
        body = body.replace(b'"displayName"', b'"grace_seconds"')
    before = len(proxied.emulator_calls())
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        reply = raw_request(proxied.proxy.port, "POST", target, body=body, headers=_admin(proxied))
    assert reply.status == 400, reply.body[:300]
    error = reply.json()["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    assert error["message"].startswith("Invalid JSON payload received: ")
    assert len(proxied.emulator_calls()) == before
    lines = [r for r in caplog.records if r.name.startswith("proxy")]
    assert len(lines) <= 1 and not any(r.exc_info for r in lines), [r.getMessage() for r in lines]
