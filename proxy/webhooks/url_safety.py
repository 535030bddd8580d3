"""Which webhook URLs the proxy may call: no server-side request forgery.

- `https` only; plain `http` only to a loopback host, and only with VBP_WEBHOOK_ALLOW_LOOPBACK (development).
- No user or password in the URL.
- Every address the host resolves to must be a public one: not private, loopback, link-local, multicast, reserved,
  shared (100.64/10) or a cloud metadata address, unless VBP_WEBHOOK_ALLOWED_NETWORKS names it (loopback is also
  allowed by VBP_WEBHOOK_ALLOW_LOOPBACK). An IPv4 address written as IPv6 (`::ffff:10.0.0.1`) is judged as IPv4.
The check runs at registration and again at every delivery, on the addresses resolved then; the delivery connects
to the very address that was checked (`Target.address`), so a DNS answer that changes in between changes nothing.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Cloud metadata services (GCP, AWS, Azure, Alibaba, Oracle): refused even where they are not in a private range.
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "fd00:ec2::254", "168.63.129.16", "100.100.100.200", "192.0.0.192"))
METADATA_HOSTS = frozenset({"metadata", "metadata.google.internal", "metadata.goog", "instance-data",
                            "instance-data.ec2.internal"})
LOOPBACK_HOSTS = frozenset({"localhost", "localhost."})
MAX_URL_CHARS = 2000


class UnsafeUrl(ValueError):
    """A URL the proxy will not call, and why."""


@dataclass(frozen=True)
class Target:
    """A checked URL: its parts, and the address a delivery connects to."""

    url: str
    scheme: str
    host: str
    port: int
    address: IPAddress


@dataclass(frozen=True)
class UrlPolicy:
    """The two settings of the rules above."""

    allow_loopback: bool = False
    allowed_networks: Sequence[Network] = ()


def _plain(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def refusal(address: IPAddress, policy: UrlPolicy) -> str | None:
    """Why a delivery may not go to this address, or None when it may."""
    address = _plain(address)
    if any(address in network for network in policy.allowed_networks):
        return None
    if address.is_loopback:
        return None if policy.allow_loopback else "a loopback address"
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_private:
        return "a private address"
    if address.is_multicast or address.is_reserved or address.is_unspecified or not address.is_global:
        return "not a public address"
    return None


def _parse(url: str, policy: UrlPolicy) -> tuple[str, str, int]:
    if len(url) > MAX_URL_CHARS:
        raise UnsafeUrl(f"the URL is longer than {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl(f"not a URL: {exc}") from None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if not host:
        raise UnsafeUrl("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("the URL may not carry a user or password")
    if host in METADATA_HOSTS:
        raise UnsafeUrl(f"{host} is a cloud metadata host")
    if scheme == "http":
        if not policy.allow_loopback:
            raise UnsafeUrl("only https URLs are allowed (plain http only to loopback, with "
                            "VBP_WEBHOOK_ALLOW_LOOPBACK=true)")
        if not _loopback_host(host):
            raise UnsafeUrl("plain http is allowed only to a loopback host (127.0.0.1, ::1, localhost)")
    elif scheme != "https":
        raise UnsafeUrl(f"only https URLs are allowed, not {scheme or 'a URL without a scheme'}")
    return scheme, host, port or (443 if scheme == "https" else 80)


def _loopback_host(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return _plain(ipaddress.ip_address(host)).is_loopback
    except ValueError:
        return False


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (a literal address: itself). Blocking: run it in a thread."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UnsafeUrl(f"{host} does not resolve: {exc}") from None
    return sorted({ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in found}, key=str)


def check_url(url: str, policy: UrlPolicy) -> Target:
    """The URL's target when every rule holds, else UnsafeUrl saying which does not. Resolves the host (blocking)."""
    scheme, host, port = _parse(url, policy)
    addresses = resolve(host, port)
    if not addresses:
        raise UnsafeUrl(f"{host} resolves to no address")
    for address in addresses:
        reason = refusal(address, policy)
        if reason is not None:
            raise UnsafeUrl(f"{host} resolves to {address}, {reason}")
    if scheme == "http" and not all(_plain(a).is_loopback for a in addresses):
        raise UnsafeUrl("plain http is allowed only to a loopback address")
    return Target(url=url, scheme=scheme, host=host, port=port, address=addresses[0])
