"""Which headers cross the proxy, each way.

Requests keep only an allowlist: whatever the caller sends that is not on it (its credentials, cookies,
hop-by-hop headers, `x-goog-user-project`, forwarding headers) never reaches Google. Replies drop what
belongs to the upstream connection or to Google's domain rather than the proxy's.
"""

from __future__ import annotations

from collections.abc import Iterable

# RFC 9110 section 7.6.1 and RFC 9112: meaningful for one connection only, never forwarded.
HOP_BY_HOP: frozenset[str] = frozenset({
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
    "proxy-authorization", "proxy-authenticate",
})

# What a caller may send on to Vertex. Content-Length and Host are left to the HTTP client, which
# computes them for the body it actually sends (the proxy may rewrite create bodies).
REQUEST_ALLOWED: frozenset[str] = frozenset({
    "content-type", "accept", "accept-language", "user-agent", "x-goog-request-params", "x-goog-api-client",
})

# Replies must come uncompressed: the proxy reads create, get and list bodies for its ledger.
REQUEST_ADDED: tuple[tuple[str, str], ...] = (("accept-encoding", "identity"),)

# Cookies belong to Google's domain; alt-svc would send clients to HTTP/3 on the proxy's port; date and
# server are the proxy's own to send (uvicorn adds both, and duplicates confuse clients).
RESPONSE_DROPPED: frozenset[str] = HOP_BY_HOP | {"set-cookie", "set-cookie2", "alt-svc", "date", "server"}

# Only set once the body has been decoded by the HTTP client, when these would describe the wrong bytes.
DECODED_DROPPED: frozenset[str] = frozenset({"content-encoding", "content-length"})

REQUEST_ID = "x-request-id"  # the gateway's id for the request (proxy.gateway.request_id), passed on to Vertex


def connection_named(headers: Iterable[tuple[str, str]]) -> set[str]:
    """The header names listed in any Connection header: they are hop-by-hop too."""
    named: set[str] = set()
    for name, value in headers:
        if name.lower() == "connection":
            named.update(token.strip().lower() for token in value.split(",") if token.strip())
    return named


def request_headers(incoming: Iterable[tuple[str, str]], *, request_id: str) -> list[tuple[str, str]]:
    """The caller's headers that may go on to Vertex, plus the proxy's request id and encoding choice."""
    incoming = list(incoming)
    dropped = connection_named(incoming)
    kept = [(name.lower(), value) for name, value in incoming
            if name.lower() in REQUEST_ALLOWED and name.lower() not in dropped]
    return [*kept, *REQUEST_ADDED, (REQUEST_ID, request_id)]


def response_headers(upstream: Iterable[tuple[str, str]], *, decoded: bool = False) -> list[tuple[str, str]]:
    """Vertex's reply headers that go back to the caller; `decoded` when the client library inflated the body."""
    upstream = list(upstream)
    dropped = RESPONSE_DROPPED | connection_named(upstream)
    if decoded:
        dropped = dropped | DECODED_DROPPED
    return [(name.lower(), value) for name, value in upstream if name.lower() not in dropped]
