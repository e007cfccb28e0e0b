"""Where webhooks may go: one URL rule and one destination policy (the SSRF guard).

Tenant-supplied URLs (every URL from a subscriptions table, and any URL whose host is filled
in from a record) are untrusted. Before each delivery the host is resolved once, every
address it resolves to must be globally routable (or inside an operator's
``[http] allowed_networks``), and the connection goes to the address that was checked: no
second resolution, so DNS rebinding cannot swap it. The original host name stays in the
``Host`` header and in TLS (SNI and certificate verification). Redirects are never followed.

What is refused: loopback, private (RFC 1918, ULA), link-local (169.254.0.0/16, where cloud
metadata lives, and fe80::/10), shared CGNAT space, multicast, reserved, unspecified, and the
IPv4-mapped, NAT64 and 6to4 forms of any of them. Every spelling of an address counts the
same: the host is resolved by the system's resolver, which reads ``127.1``, ``0177.0.0.1``,
``0x7f.0.0.1`` and ``2130706433`` all as 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
import socket
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import urllib3

from processor.errors import DestinationNotAllowed

__all__ = [
    "DestinationNotAllowed",
    "EgressPolicy",
    "IPAddress",
    "Network",
    "PinnedDestination",
    "check_http_url",
    "check_url_template",
    "host_is_templated",
    "pinned_request",
    "refusal",
    "system_resolver",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: host, port -> the addresses the host resolves to (as text)
Resolver = Callable[[str, int], Sequence[str]]

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def check_url_template(value: str) -> str:
    """An ``http(s)://`` URL whose only placeholder is ``{tenant}``; ValueError otherwise."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(value) if f is not None]
    except ValueError as exc:
        raise ValueError(f"malformed URL template: {exc}") from None
    if any(f != "tenant" for f in fields):
        raise ValueError("the only placeholder a URL may use is {tenant}")
    try:
        parsed = urllib3.util.parse_url(value.replace("{tenant}", "t"))
    except urllib3.exceptions.LocationParseError:
        raise ValueError("must be an http:// or https:// URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError("must be an http:// or https:// URL")
    return value


def check_http_url(value: str) -> str:
    """An ``http(s)://`` URL with a host and no placeholder (an AWS endpoint, a health URL);
    ValueError otherwise. The same parser and rules as :func:`check_url_template`."""
    if "{" in value or "}" in value:
        raise ValueError("must be an http:// or https:// URL (no placeholders)")
    return check_url_template(value)


def host_is_templated(template: str) -> bool:
    """Whether a record's tenant is filled into the URL's host (so the host is untrusted)."""
    authority = template.split("://", 1)[-1].split("/", 1)[0]
    return "{tenant}" in authority


def refusal(address: IPAddress) -> str | None:
    """Why ``address`` is not a public destination, or None when it is globally routable."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            inner = refusal(embedded)
            return None if inner is None else f"{inner} (embedded in {address})"
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("shared address space (CGNAT)", address in _CGNAT),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("not globally routable", not address.is_global),
    )
    return next((reason for reason, hit in checks if hit), None)


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolves ``host`` to (literal IPs of any spelling too)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise DestinationNotAllowed(host, None, f"cannot resolve: {exc}") from None
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True, slots=True)
class PinnedDestination:
    """A checked destination: connect to ``address``, say ``host`` in Host and TLS."""

    scheme: str
    host: str
    port: int
    address: str
    target: str  # path and query
    host_header: str


@dataclass(frozen=True)
class EgressPolicy:
    """The destination rules for untrusted URLs (built from ``[http]``)."""

    allowed_networks: tuple[Network, ...] = ()
    https_only: bool = False
    #: apply the policy to operator-written URLs too (they are trusted by default)
    guard_operator_urls: bool = False
    resolve: Resolver = field(default=system_resolver, repr=False)

    def admits(self, address: IPAddress) -> str | None:
        """None when ``address`` may be connected to, else why not."""
        if any(address in net for net in self.allowed_networks if net.version == address.version):
            return None
        why = refusal(address)
        if why is None:
            return None
        return f"{why}; admit it with [http] allowed_networks if it is yours"

    def pin(self, url: str) -> PinnedDestination:
        """Resolve and check ``url``'s host; raises DestinationNotAllowed without connecting."""
        parsed = urllib3.util.parse_url(url)
        scheme = parsed.scheme or "http"
        host = (parsed.host or "").strip("[]")
        if self.https_only and scheme != "https":
            raise DestinationNotAllowed(
                host, None, "plain http is refused ([http] tenant_https_only)"
            )
        port = parsed.port or (443 if scheme == "https" else 80)
        addresses = list(self.resolve(host, port))
        if not addresses:
            raise DestinationNotAllowed(host, None, "resolves to no address")
        for text in addresses:
            address = ipaddress.ip_address(text.split("%", 1)[0])
            why = self.admits(address)
            if why is not None:
                raise DestinationNotAllowed(host, str(address), why)
        default_port = (scheme == "https" and port == 443) or (scheme == "http" and port == 80)
        netloc = parsed.host or host
        return PinnedDestination(
            scheme=scheme,
            host=host,
            port=port,
            address=addresses[0].split("%", 1)[0],
            target=parsed.request_uri,
            host_header=netloc if default_port else f"{netloc}:{port}",
        )


def pinned_request(
    http: urllib3.PoolManager,
    destination: PinnedDestination,
    *,
    body: bytes,
    headers: dict[str, str],
    timeout: float,
) -> Any:
    """POST to the checked address with the original host in Host, SNI and certificate check."""
    pool_kwargs: dict[str, Any] | None = None
    if destination.scheme == "https":
        pool_kwargs = {"server_hostname": destination.host, "assert_hostname": destination.host}
    pool = http.connection_from_host(
        destination.address,
        port=destination.port,
        scheme=destination.scheme,
        pool_kwargs=pool_kwargs,
    )
    return pool.urlopen(
        "POST",
        destination.target,
        body=body,
        headers={**headers, "Host": destination.host_header},
        timeout=timeout,
        retries=False,
        redirect=False,
        assert_same_host=False,
    )
