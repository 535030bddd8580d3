"""What a request's own origin is, when a TLS terminator may stand in front of the proxy.

`X-Forwarded-Proto` is believed only from the addresses in VBP_TRUSTED_PROXIES (none by default): from anyone
else it is a header like any other, and a client could claim `https` to get what only TLS should give.
The host is the request's `Host` header; it is compared, never echoed into a redirect.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_peer(scope: Mapping[str, Any], trusted: Iterable[Network]) -> bool:
    """Is the connection's peer one of the trusted proxies?"""
    client = scope.get("client")
    if not client:
        return False
    try:
        address = ipaddress.ip_address(client[0])
    except ValueError:  # a Unix socket path, or nothing an IP could be
        return False
    return any(address in network for network in trusted)


def _last_value(scope: Mapping[str, Any], name: bytes) -> str:
    """The last comma-separated entry of the last `name` header line ('' without one)."""
    values = [value for key, value in scope.get("headers", ()) if key.lower() == name]
    return values[-1].decode("latin-1").split(",")[-1].strip().lower() if values else ""


def request_scheme(scope: Mapping[str, Any], trusted: Iterable[Network]) -> str:
    """`https` when the request came over TLS, directly or as a trusted proxy says; `http` otherwise."""
    if scope.get("scheme") == "https":
        return "https"
    # Each proxy appends its own (to the line, or as a line): the last entry is what the nearest, trusted one saw.
    if _last_value(scope, b"x-forwarded-proto") == "https" and trusted_peer(scope, trusted):
        return "https"
    return "http"


def request_origin(scope: Mapping[str, Any], trusted: Iterable[Network]) -> str:
    """`scheme://host[:port]` of the site as this request addressed it (the `Origin` a same-site form sends)."""
    return f"{request_scheme(scope, trusted)}://{_last_value(scope, b'host')}"
