"""The SSRF guard: which addresses are refused, DNS answers, allowlists, and the pinned
connection. Nothing here connects anywhere but 127.0.0.1."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from genq.webhooks.ssrf import (
    HostUnresolved,
    WebhookUrlRefused,
    check_webhook_url,
    refusal_reason,
    resolve_target,
)
from schemas import InvalidRequest


@pytest.fixture
def no_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a TCP connection fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"the guard connected: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def fake_dns(*answers: str, error: int | None = None) -> Any:
    def resolve(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        if error is not None:
            raise socket.gaierror(error, "fake dns failure")
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in answers
        ]

    return resolve


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/hook", "loopback"),
        ("http://127.8.9.10:8080/", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://169.254.1.1/", "link-local"),
        ("http://10.0.0.1/", "private"),
        ("http://172.16.5.4/", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://100.64.0.1/", "reserved"),  # carrier-grade NAT
        ("http://0.0.0.0/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://255.255.255.255/", "private"),
        ("http://[::1]/", "loopback"),
        ("http://[::]/", "unspecified"),
        ("http://[fe80::1]/", "link-local"),
        ("http://[fc00::1]/", "private"),
        ("http://[ff02::1]/", "multicast"),
        ("http://[fd00:ec2::254]/", "metadata"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),  # IPv4-mapped
        ("http://[::ffff:169.254.169.254]/", "metadata"),
        ("http://[::ffff:10.0.0.1]/", "private"),
        ("http://[2002:a00:1::1]/", "private"),  # 6to4 of 10.0.0.1
        ("http://[64:ff9b::a9fe:a9fe]/", "metadata"),  # NAT64 of 169.254.169.254
    ],
)
def test_internal_addresses_are_refused_without_connecting(
    url: str, reason: str, no_connections: None
) -> None:
    with pytest.raises(WebhookUrlRefused) as info:
        resolve_target(url, [])
    assert reason in info.value.message
    assert info.value.code.value == "webhook_url_refused"
    assert isinstance(info.value, InvalidRequest)


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/",
        "gopher://example.com/",
        "javascript:alert(1)",
        "//example.com/",
        "http:///nohost",
    ],
)
def test_only_http_and_https_with_a_host(url: str, no_connections: None) -> None:
    with pytest.raises(WebhookUrlRefused):
        check_webhook_url(url, [])


def test_a_public_address_is_pinned(no_connections: None) -> None:
    target = resolve_target("https://93.184.216.34/hook", [])
    assert (target.address, target.port, target.host) == ("93.184.216.34", 443, "93.184.216.34")


def test_every_dns_answer_must_be_public() -> None:
    # A name answering one public and one private address (rebinding) is refused.
    with pytest.raises(WebhookUrlRefused, match="private"):
        resolve_target("https://hooks.example/", [], resolver=fake_dns("93.184.216.34", "10.0.0.1"))
    target = resolve_target("https://hooks.example:8443/x", [], resolver=fake_dns("93.184.216.34"))
    assert (target.host, target.port, target.address) == ("hooks.example", 8443, "93.184.216.34")


def test_numeric_host_forms_are_resolved_before_judging(no_connections: None) -> None:
    # 2130706433 and 0x7f.1 are 127.0.0.1 to inet_aton: resolved, then refused.
    for url in ("http://2130706433/", "http://0x7f.1/"):
        with pytest.raises(WebhookUrlRefused, match="loopback"):
            resolve_target(url, [])
    with pytest.raises(WebhookUrlRefused, match="not a valid URL"):
        resolve_target("http://0177.0.0.1/", [])  # httpx itself refuses octal octets


@pytest.mark.parametrize(
    ("allow", "url"),
    [
        (["127.0.0.1/32"], "http://127.0.0.1:9/hook"),
        (["127.0.0.1"], "http://127.0.0.1:9/hook"),
        (["10.0.0.0/8"], "http://10.1.2.3/"),
        (["10.0.0.0/8"], "http://[::ffff:10.1.2.3]/"),
        (["::1/128"], "http://[::1]/"),
    ],
)
def test_allowlisted_networks_pass(allow: list[str], url: str, no_connections: None) -> None:
    check_webhook_url(url, allow)


def test_allowlisted_network_does_not_open_others(no_connections: None) -> None:
    with pytest.raises(WebhookUrlRefused):
        check_webhook_url("http://169.254.169.254/", ["127.0.0.1/32"])


def test_allowlisted_host_names_pass_whatever_they_resolve_to() -> None:
    dns = fake_dns("10.0.0.5")
    target = resolve_target("http://Hooks.Internal/x", ["hooks.internal"], resolver=dns)
    assert target.address == "10.0.0.5"
    with pytest.raises(WebhookUrlRefused):
        resolve_target("http://other.internal/x", ["hooks.internal"], resolver=dns)


def test_dns_failures() -> None:
    with pytest.raises(WebhookUrlRefused, match="does not resolve"):
        resolve_target("http://nx.example/", [], resolver=fake_dns(error=socket.EAI_NONAME))
    with pytest.raises(HostUnresolved):
        resolve_target("http://slow.example/", [], resolver=fake_dns(error=socket.EAI_AGAIN))


def test_refusal_reason_public_addresses() -> None:
    import ipaddress

    for address in ("8.8.8.8", "93.184.216.34", "2606:4700:4700::1111"):
        assert refusal_reason(ipaddress.ip_address(address)) is None
