"""No SSRF: which webhook URLs are refused at registration, and why."""

from __future__ import annotations

import ipaddress

import pytest

from proxy.webhooks.url_safety import UnsafeUrl, UrlPolicy, check_url

STRICT = UrlPolicy()
LOOPBACK = UrlPolicy(allow_loopback=True)


@pytest.mark.parametrize(("url", "policy", "reason"), [
    ("http://8.8.8.8/hook", STRICT, "only https URLs are allowed (plain http only to loopback, with "
                                        "VBP_WEBHOOK_ALLOW_LOOPBACK=true)"),
    ("http://8.8.8.8/hook", LOOPBACK, "plain http is allowed only to a loopback host (127.0.0.1, ::1, localhost)"),
    ("ftp://8.8.8.8/hook", STRICT, "only https URLs are allowed, not ftp"),
    ("https://user:pw@8.8.8.8/", STRICT, "the URL may not carry a user or password"),
    ("https://10.1.2.3/hook", STRICT, "10.1.2.3 resolves to 10.1.2.3, a private address"),
    ("https://192.168.0.10/", STRICT, "192.168.0.10 resolves to 192.168.0.10, a private address"),
    ("https://172.16.5.4/", STRICT, "172.16.5.4 resolves to 172.16.5.4, a private address"),
    ("https://169.254.169.254/computeMetadata/v1/", STRICT,
     "169.254.169.254 resolves to 169.254.169.254, a cloud metadata address"),
    ("https://[fd00:ec2::254]/", STRICT, "fd00:ec2::254 resolves to fd00:ec2::254, a cloud metadata address"),
    ("https://169.254.10.10/", STRICT, "169.254.10.10 resolves to 169.254.10.10, a link-local address"),
    ("https://[fe80::1]/", STRICT, "fe80::1 resolves to fe80::1, a link-local address"),
    ("https://127.0.0.1/", STRICT, "127.0.0.1 resolves to 127.0.0.1, a loopback address"),
    ("https://[::ffff:10.0.0.1]/", STRICT, "::ffff:10.0.0.1 resolves to ::ffff:a00:1, a private address"),
    ("https://100.64.0.1/", STRICT, "100.64.0.1 resolves to 100.64.0.1, not a public address"),
    ("https://0.0.0.0/", STRICT, "0.0.0.0 resolves to 0.0.0.0, a private address"),
    ("https://metadata.google.internal/v1/", STRICT, "metadata.google.internal is a cloud metadata host"),
    ("https://localhost/hook", STRICT, "localhost resolves to 127.0.0.1, a loopback address"),
    ("https://10.0.0.9/", LOOPBACK, "10.0.0.9 resolves to 10.0.0.9, a private address"),
])
def test_refused(url: str, policy: UrlPolicy, reason: str) -> None:
    with pytest.raises(UnsafeUrl) as refused:
        check_url(url, policy)
    assert str(refused.value) == reason


def test_public_https_and_loopback_http_in_development_pass() -> None:
    target = check_url("https://8.8.8.8:8443/hooks?x=1", STRICT)
    assert (target.scheme, target.host, target.port, str(target.address)) == ("https", "8.8.8.8", 8443,
                                                                             "8.8.8.8")
    assert str(check_url("http://127.0.0.1:9000/h", LOOPBACK).address) == "127.0.0.1"
    assert str(check_url("http://[::1]:9000/h", LOOPBACK).address) == "::1"


def test_the_allowlist_names_what_may_be_private() -> None:
    policy = UrlPolicy(allowed_networks=(ipaddress.ip_network("10.20.0.0/16"),))
    assert str(check_url("https://10.20.3.4/hook", policy).address) == "10.20.3.4"
    with pytest.raises(UnsafeUrl):
        check_url("https://10.21.3.4/hook", policy)
