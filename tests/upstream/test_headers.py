"""Which headers cross the proxy: a table each way, then what a real upstream receives."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from proxy.upstream import Upstream
from proxy.upstream.headers import request_headers, response_headers
from tests.upstream.stub import StubServer

pytestmark = pytest.mark.anyio

# (name as the caller spells it, value, reaches Vertex?)
REQUEST_TABLE = [
    ("Authorization", "Bearer caller-proxy-key", False),
    ("x-goog-api-key", "caller-proxy-key", False),
    ("Cookie", "session=abc", False),
    ("Connection", "keep-alive, X-Private-Hop", False),
    ("X-Private-Hop", "named by Connection", False),
    ("Keep-Alive", "timeout=5", False),
    ("Proxy-Connection", "keep-alive", False),
    ("TE", "trailers", False),
    ("Trailer", "x-checksum", False),
    ("Transfer-Encoding", "chunked", False),
    ("Upgrade", "h2c", False),
    ("Proxy-Authorization", "Basic dXNlcjpwdw==", False),
    ("Proxy-Authenticate", "Basic", False),
    ("Host", "proxy.internal:4000", False),
    ("Content-Length", "17", False),
    ("x-goog-user-project", "someone-elses-project", False),
    ("X-Forwarded-For", "10.1.2.3", False),
    ("Content-Type", "application/json", True),
    ("Accept", "application/json", True),
    ("x-goog-request-params", "parent=projects/p/locations/us-central1", True),
    ("User-Agent", "google-genai-sdk/1.20.0 gl-python/3.11", True),
    ("x-goog-api-client", "google-genai-sdk/1.20.0 gl-python/3.11", True),
]

# (name as Vertex spells it, value, reaches the caller?)
RESPONSE_TABLE = [
    ("Connection", "keep-alive, X-Upstream-Hop", False),
    ("X-Upstream-Hop", "named by Connection", False),
    ("Keep-Alive", "timeout=60", False),
    ("Proxy-Connection", "keep-alive", False),
    ("TE", "trailers", False),
    ("Trailer", "x-checksum", False),
    ("Transfer-Encoding", "chunked", False),
    ("Upgrade", "h2c", False),
    ("Proxy-Authorization", "Basic dXNlcjpwdw==", False),
    ("Proxy-Authenticate", "Basic", False),
    ("Set-Cookie", "NID=1; Domain=.google.com", False),
    ("Alt-Svc", 'h3=":443"; ma=2592000', False),
    ("Date", "Tue, 02 Sep 2026 20:06:30 GMT", False),
    ("Server", "scaffolding on HTTPServer2", False),
    ("Content-Type", "application/json; charset=UTF-8", True),
    ("Content-Length", "1234", True),
    ("Content-Encoding", "gzip", True),
    ("Vary", "Origin, X-Origin, Referer", True),
    ("Retry-After", "3", True),
    ("WWW-Authenticate", "Bearer", True),
    ("x-goog-request-id", "abc", True),
]


@pytest.mark.parametrize(("name", "value", "passes"), REQUEST_TABLE, ids=[row[0] for row in REQUEST_TABLE])
def test_request_header_table(name: str, value: str, passes: bool) -> None:
    incoming = [(n, v) for n, v, _ in REQUEST_TABLE]
    out = request_headers(incoming, request_id="req-0001")
    assert ((name.lower(), value) in out) is passes
    if not passes:
        assert name.lower() not in {n for n, _ in out}


def test_request_headers_add_request_id_and_identity_encoding() -> None:
    incoming = [("Accept-Encoding", "gzip, br"), ("x-request-id", "caller-chosen-id"), ("Accept", "*/*")]
    out = request_headers(incoming, request_id="req-0002")
    assert out == [("accept", "*/*"), ("accept-encoding", "identity"), ("x-request-id", "req-0002")]


@pytest.mark.parametrize(("name", "value", "passes"), RESPONSE_TABLE, ids=[row[0] for row in RESPONSE_TABLE])
def test_response_header_table(name: str, value: str, passes: bool) -> None:
    upstream = [(n, v) for n, v, _ in RESPONSE_TABLE]
    out = response_headers(upstream)
    assert ((name.lower(), value) in out) is passes
    if not passes:
        assert name.lower() not in {n for n, _ in out}


def test_response_headers_after_decoding_drop_length_and_encoding() -> None:
    upstream = [("Content-Type", "application/json"), ("Content-Length", "40"), ("Content-Encoding", "gzip")]
    assert response_headers(upstream, decoded=True) == [("content-type", "application/json")]


def test_response_headers_keep_repeated_headers_in_order() -> None:
    upstream = [("Vary", "Origin"), ("Vary", "X-Origin"), ("Set-Cookie", "a=1"), ("Vary", "Referer")]
    assert response_headers(upstream) == [("vary", "Origin"), ("vary", "X-Origin"), ("vary", "Referer")]


async def test_upstream_receives_only_the_filtered_headers(
        stub: StubServer, make_upstream: Callable[..., Upstream]) -> None:
    upstream = make_upstream()
    incoming = [(n, v) for n, v, _ in REQUEST_TABLE]
    sent = request_headers(incoming, request_id="req-0003")
    reply = await upstream.send("POST", f"{stub.url}/v1/echo", headers=sent, body=b'{"displayName":"x"}',
                                idempotent=False)
    await reply.read()
    (hit,) = stub.hits
    # What the HTTP client itself must add to frame the request; nothing else of its own.
    framing = {"host", "content-length", "connection"}
    assert hit.header_names() - framing == {n for n, _ in sent}
    for name, value in sent:
        assert hit.header(name) == value
    assert hit.header("connection") in (None, "keep-alive")
    assert hit.header("content-length") == "19"


async def test_reply_cookies_are_never_kept_by_the_shared_client(
        stub: StubServer, make_upstream: Callable[..., Upstream]) -> None:
    upstream = make_upstream()
    for _ in range(2):
        reply = await upstream.send("GET", f"{stub.url}/v1/cookie", headers=[], body=None, idempotent=True)
        assert await reply.read() == b'{"cookie": null}'
        assert any(n.lower() == "set-cookie" for n, _ in reply.headers)
        out = response_headers(reply.headers)
        assert "set-cookie" not in {n for n, _ in out} and "alt-svc" not in {n for n, _ in out}
    assert [hit.header("cookie") for hit in stub.hits] == [None, None]


async def test_an_authorization_header_handed_to_the_upstream_is_not_forwarded(
        stub: StubServer, make_upstream: Callable[..., Upstream]) -> None:
    upstream = make_upstream()
    reply = await upstream.send("GET", f"{stub.url}/v1/echo", headers=[("Authorization", "Bearer caller-key")],
                                body=None, idempotent=True)
    await reply.read()
    assert stub.hits[0].header("authorization") is None
