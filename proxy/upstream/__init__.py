"""The HTTP layer under the forwarding path: one small interface, two implementations.

    Upstream (protocol)       send(method, url, headers=, body=, idempotent=) -> UpstreamResponse
    ├── AiohttpUpstream       the hot path: aiohttp's client, several times httpx's throughput
    └── HttpxUpstream         httpx with an injectable transport and GoogleAuth (tests, ASGI apps)

Errors raised by `send` (replies of any HTTP status are returned, not raised):
    DeadlineExceeded  (504)   no reply within the timeout
    Unavailable       (503)   ConnectFailed: no connection; ConnectionLost: it broke before the reply
"""

from proxy.upstream.aiohttp_upstream import AiohttpUpstream
from proxy.upstream.base import Upstream
from proxy.upstream.httpx_upstream import HttpxUpstream
from proxy.upstream.response import UpstreamResponse
from proxy.upstream.retry import ConnectFailed, ConnectionLost, RetryPolicy, retry_after

__all__ = [
    "AiohttpUpstream", "ConnectFailed", "ConnectionLost", "HttpxUpstream", "RetryPolicy", "Upstream",
    "UpstreamResponse", "retry_after",
]
