"""The SSRF guard: resolve a webhook host once, refuse internal addresses, pin the connection.

A receiver URL comes from a tenant, so without this guard a webhook could reach the cloud
metadata service, Redis or anything else on the workers' network. Every address the host
resolves to must be public (or allowlisted by the operator with ``GENQ_WEBHOOK_ALLOW``), and
the request then connects to exactly the address that was checked, so a second DNS answer
(rebinding) cannot redirect it. TLS still verifies the certificate against the URL's host.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import ssl
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from schemas import InvalidRequest, TransientError
from schemas.errors import ErrorCode

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[..., list[tuple[Any, ...]]]

SCHEMES = {"http": 80, "https": 443}
METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")
# getaddrinfo failures that may pass by themselves; anything else means "no such host".
TEMPORARY_DNS_ERRORS = frozenset({socket.EAI_AGAIN, socket.EAI_FAIL})


class WebhookUrlRefused(InvalidRequest):
    """The URL may not receive webhooks (scheme, or an address the guard refuses)."""

    code = ErrorCode.WEBHOOK_URL_REFUSED


class HostUnresolved(TransientError):
    """The receiver's host did not resolve right now (DNS may recover)."""


@dataclass(frozen=True)
class Allowlist:
    """Operator exceptions: networks (``10.1.0.0/16``, ``127.0.0.1``) and exact host names."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Allowlist:
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for entry in (e.strip() for e in entries):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.lower().rstrip("."))
        return cls(tuple(networks), frozenset(hosts))

    def admits(self, address: IPAddress) -> bool:
        candidates = [address, *_embedded_ipv4(address)]
        return any(
            candidate.version == network.version and candidate in network
            for candidate in candidates
            for network in self.networks
        )


@dataclass(frozen=True)
class Target:
    """A checked receiver: the URL to request and the one address to connect to."""

    url: httpx.URL
    host: str
    port: int
    address: str


def refusal_reason(address: IPAddress) -> str | None:
    """Why ``address`` may not receive webhooks, or None for a public address."""
    # The embedded IPv4 address first: it is where a mapped or 6to4 address really leads.
    for candidate in (*_embedded_ipv4(address), address):
        if candidate in METADATA_ADDRESSES:
            return "the cloud metadata address"
        if candidate.is_loopback:
            return "a loopback address"
        if candidate.is_link_local:
            return "a link-local address"
        if candidate.is_unspecified:
            return "the unspecified address"
        if candidate.is_multicast:
            return "a multicast address"
        if candidate.is_private:
            return "a private address"
        if not candidate.is_global:
            return "a reserved address"
    return None


def _embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries (mapped, 6to4, NAT64, Teredo client)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found = [address.ipv4_mapped, address.sixtofour]
    if address in NAT64_PREFIX:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if address.teredo is not None:
        found.append(address.teredo[1])
    return [a for a in found if a is not None]


def resolve_target(
    url: str, allow: Sequence[str] | Allowlist, *, resolver: Resolver = socket.getaddrinfo
) -> Target:
    """Check ``url`` and resolve its host; raises ``WebhookUrlRefused`` or ``HostUnresolved``."""
    allowlist = allow if isinstance(allow, Allowlist) else Allowlist.parse(allow)
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise WebhookUrlRefused(f"webhook URL {url!r} is not a valid URL: {exc}") from exc
    if parsed.scheme not in SCHEMES:
        raise WebhookUrlRefused(
            f"webhook URLs must be http:// or https://, not {parsed.scheme or 'schemeless'}://"
        )
    host = parsed.raw_host.decode("ascii").lower().rstrip(".")
    if not host:
        raise WebhookUrlRefused(f"webhook URL {url!r} has no host")
    port = parsed.port or SCHEMES[parsed.scheme]
    addresses = _resolve(host, port, resolver)
    if host not in allowlist.hosts:
        for address in addresses:
            reason = refusal_reason(address)
            if reason is not None and not allowlist.admits(address):
                raise WebhookUrlRefused(
                    f"webhook host {host!r} resolves to {address}, {reason}; an operator can "
                    "allow it with GENQ_WEBHOOK_ALLOW",
                    details=[{"field": "webhook_url", "message": f"{reason} is not allowed"}],
                )
    return Target(url=parsed, host=host, port=port, address=str(addresses[0]))


def _resolve(host: str, port: int, resolver: Resolver) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = resolver(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        if exc.errno in TEMPORARY_DNS_ERRORS:
            raise HostUnresolved(f"webhook host {host!r} did not resolve: {exc.strerror}") from exc
        raise WebhookUrlRefused(f"webhook host {host!r} does not resolve") from exc
    except (UnicodeError, OSError) as exc:
        raise HostUnresolved(f"webhook host {host!r} did not resolve: {exc}") from exc
    # Drop an IPv6 scope id ("fe80::1%eth0") before parsing; it does not change the verdict.
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addresses:
        raise WebhookUrlRefused(f"webhook host {host!r} does not resolve")
    return list(dict.fromkeys(addresses))


def check_webhook_url(url: str, allow: Sequence[str]) -> None:
    """Submit-time check: raises ``WebhookUrlRefused`` (code ``webhook_url_refused``) for a URL
    that cannot receive webhooks. A DNS hiccup is not a refusal: delivery checks again."""
    try:
        resolve_target(url, allow)
    except HostUnresolved:
        return


class _PinnedBackend(httpcore.SyncBackend):
    """Connects every request for ``host`` to the already-checked ``address``."""

    def __init__(self, host: str, address: str) -> None:
        self._host = host
        self._address = address

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        if host.lower().rstrip(".") != self._host:
            raise httpcore.ConnectError(f"connection to {host!r} is not the pinned webhook host")
        return super().connect_tcp(
            self._address,
            port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )


@functools.cache
def default_ssl_context() -> ssl.SSLContext:
    """The verifying TLS context, built once per process (loading CA files is slow)."""
    return httpx.create_ssl_context()


def pinned_transport(
    target: Target, ssl_context: ssl.SSLContext | None = None
) -> httpx.HTTPTransport:
    """An httpx transport that reaches ``target.host`` only at ``target.address``.

    The URL keeps its host, so the Host header, TLS SNI and certificate check all use it.
    """
    context = ssl_context or default_ssl_context()
    transport = httpx.HTTPTransport(verify=context, trust_env=False)
    transport._pool = httpcore.ConnectionPool(
        ssl_context=context,
        network_backend=_PinnedBackend(target.host, target.address),
        max_connections=1,
        retries=0,
    )
    return transport
