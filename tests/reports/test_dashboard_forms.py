"""The dashboard's form posts refuse other sites (Sec-Fetch-Site, Origin), and its session cookie is HttpOnly,
SameSite=Lax, and Secure when the request came over TLS as a trusted proxy (VBP_TRUSTED_PROXIES) says. Raw HTTP,
so that every header is exactly what a browser, an attacker's page or a TLS terminator would send."""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import ip_network
from pathlib import Path
from urllib.parse import urlencode

import pytest

from proxy.reports.session_cookie import COOKIE_NAME
from tests.providers.vertex.conftest import Proxied, running
from tests.support.raw_http import RawReply, raw_request

# Runs the emulator, a proxy or `vbp` processes: left out of `make test-fast`.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def untrusting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    """No trusted proxies (the default): a 10.x terminator is trusted, the test's own 127.0.0.1 is not."""
    with running(Path(tmp_path_factory.mktemp("untrusting")), trusted_proxies=(ip_network("10.0.0.0/8"),)) as env:
        yield env


@pytest.fixture(scope="module")
def behind_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    """The test's connections come from a trusted TLS terminator."""
    with running(Path(tmp_path_factory.mktemp("behind-tls")), trusted_proxies=(ip_network("127.0.0.1"),)) as env:
        yield env


def post(env: Proxied, path: str, headers: dict[str, str], *, key: str | None = None) -> RawReply:
    body = urlencode({"key": env.keys["team-a"] if key is None else key}).encode() if path.endswith("login") else b""
    return raw_request(env.proxy.port, "POST", path, body=body, host=f"127.0.0.1:{env.proxy.port}",  # as browsers
                       headers={"Content-Type": "application/x-www-form-urlencoded", **headers})


def own(env: Proxied, scheme: str = "http") -> str:
    return f"{scheme}://127.0.0.1:{env.proxy.port}"


def cookie_attributes(reply: RawReply) -> set[str]:
    """The session cookie's attributes, lowercased; only SameSite keeps its value."""
    name_value, *attributes = reply.headers["set-cookie"].split(";")
    assert name_value.startswith(f"{COOKIE_NAME}=")
    found = set()
    for attribute in attributes:
        key, _, value = attribute.strip().lower().partition("=")
        found.add(f"{key}={value}" if key == "samesite" else key)
    return found


CROSS_SITE = [
    {"Origin": "http://evil.example"},
    {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site", "Origin": "http://sub.127.0.0.1"},
    {"Origin": "null"},
    {"Origin": "http://127.0.0.1"},  # another port is another origin
    {"Origin": "http://evil.example", "Sec-Fetch-Site": "same-origin"},  # the two disagree: either is enough
]


@pytest.mark.parametrize("path", ["/dashboard/login", "/dashboard/logout"])
@pytest.mark.parametrize("headers", CROSS_SITE, ids=[str(h) for h in CROSS_SITE])
def test_a_form_posted_from_another_site_is_403(untrusting: Proxied, path: str, headers: dict[str, str]) -> None:
    reply = post(untrusting, path, headers)
    assert reply.status == 403, reply.body
    assert "set-cookie" not in reply.headers and "location" not in reply.headers
    assert b"This form was refused" in reply.body and reply.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("headers", [
    {},  # curl, or a browser that sends neither
    {"Sec-Fetch-Site": "same-origin"},
    {"Sec-Fetch-Site": "same-origin", "Origin": "null"},  # Chromium, under the page's no-referrer policy
    {"Sec-Fetch-Site": "none"},  # typed or bookmarked
    {"Origin": "ORIGIN"},
    {"Origin": "ORIGIN", "Sec-Fetch-Site": "same-origin"},
], ids=["none", "same-origin", "same-origin-null", "fetch-none", "origin", "origin-and-same-origin"])
def test_a_form_posted_from_the_dashboard_itself_signs_in(untrusting: Proxied, headers: dict[str, str]) -> None:
    headers = {name: own(untrusting) if value == "ORIGIN" else value for name, value in headers.items()}
    reply = post(untrusting, "/dashboard/login", headers)
    assert (reply.status, reply.headers["location"]) == (303, "/dashboard"), reply.body
    assert cookie_attributes(reply) == {"httponly", "max-age", "path", "samesite=lax"}  # no Secure over http
    out = post(untrusting, "/dashboard/logout", headers)
    assert out.status == 303 and out.headers["set-cookie"].startswith(f'{COOKIE_NAME}=""')


def test_x_forwarded_proto_from_an_untrusted_peer_changes_nothing(untrusting: Proxied) -> None:
    reply = post(untrusting, "/dashboard/login", {"X-Forwarded-Proto": "https"})
    assert reply.status == 303 and "secure" not in cookie_attributes(reply)
    # ... and the page's origin stays http: an https Origin is another site's
    refused = post(untrusting, "/dashboard/login", {"X-Forwarded-Proto": "https", "Origin": own(untrusting, "https")})
    assert refused.status == 403 and b"VBP_TRUSTED_PROXIES" in refused.body


@pytest.mark.parametrize("forwarded", ["https", "HTTPS", "http, https"])
def test_behind_a_trusted_tls_terminator_the_cookie_is_secure(behind_tls: Proxied, forwarded: str) -> None:
    headers = {"X-Forwarded-Proto": forwarded, "Origin": own(behind_tls, "https"), "Sec-Fetch-Site": "same-origin"}
    reply = post(behind_tls, "/dashboard/login", headers)
    assert reply.status == 303, reply.body
    assert cookie_attributes(reply) == {"httponly", "max-age", "path", "samesite=lax", "secure"}
    out = post(behind_tls, "/dashboard/logout", headers)
    assert out.status == 303 and "secure" in out.headers["set-cookie"].lower()


def test_behind_a_trusted_terminator_plain_http_is_not_secure(behind_tls: Proxied) -> None:
    for headers in ({}, {"X-Forwarded-Proto": "http"}, {"X-Forwarded-Proto": "https, http"},
                    {"X-Forwarded-Proto": "https", "x-forwarded-proto": "http"}):  # two lines: the last one counts
        reply = post(behind_tls, "/dashboard/login", headers)
        assert reply.status == 303 and "secure" not in cookie_attributes(reply), headers
    # the site's origin is then https: an http Origin is refused
    assert post(behind_tls, "/dashboard/login", {"X-Forwarded-Proto": "https", "Origin": own(behind_tls)}).status == 403
