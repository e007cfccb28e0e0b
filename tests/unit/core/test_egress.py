"""The destination policy's classification of addresses and URLs (pure: nothing connects)."""

from __future__ import annotations

import ipaddress

import pytest

from processor.webhooks.egress import (
    DestinationNotAllowed,
    EgressPolicy,
    check_url_template,
    host_is_templated,
    refusal,
)


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fd00:ec2::254", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("100.64.0.1", "CGNAT"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("192.0.2.1", "private"),  # documentation range: Python's registry calls it private
        ("198.18.0.1", "private"),  # benchmarking range
        ("::ffff:127.0.0.1", "loopback (embedded in ::ffff:7f00:1)"),
        ("::ffff:169.254.169.254", "link-local"),
        ("64:ff9b::a00:1", "private (embedded in 64:ff9b::a00:1)"),
        ("2002:a00:1::", "private (embedded in 2002:a00:1::)"),
    ],
)
def test_non_public_addresses_are_refused_with_the_reason(address: str, why: str) -> None:
    """Every kind of non-public address, and its IPv6 wrappings, names why it is refused."""
    reason = refusal(ipaddress.ip_address(address))
    assert reason is not None
    assert why in reason


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "64:ff9b::808:808"]
)
def test_public_addresses_pass(address: str) -> None:
    """Globally routable addresses (and NAT64 of one) are admitted."""
    assert refusal(ipaddress.ip_address(address)) is None


def test_allowed_networks_admit_only_their_own_version_and_range() -> None:
    """127.0.0.0/8 admits 127.x, not ::1, not ::ffff:127.0.0.1, not 0.0.0.0."""
    policy = EgressPolicy(allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),))
    assert policy.admits(ipaddress.ip_address("127.3.4.5")) is None
    for other in ("::1", "::ffff:127.0.0.1", "0.0.0.0", "10.0.0.1"):
        assert policy.admits(ipaddress.ip_address(other)) is not None, other


def test_pin_resolves_once_and_names_host_and_address() -> None:
    """pin() asks the resolver once and returns the checked address with the original host."""
    calls: list[tuple[str, int]] = []

    def resolve(host: str, port: int) -> list[str]:
        calls.append((host, port))
        return ["93.184.216.34"]

    pinned = EgressPolicy(resolve=resolve).pin("https://hooks.example/a/b?c=1")
    assert calls == [("hooks.example", 443)]
    assert (pinned.address, pinned.host, pinned.port) == ("93.184.216.34", "hooks.example", 443)
    assert (pinned.target, pinned.host_header) == ("/a/b?c=1", "hooks.example")
    with pytest.raises(DestinationNotAllowed, match=r"hooks.example \(10.9.8.7\): private"):
        EgressPolicy(resolve=lambda h, p: ["10.9.8.7"]).pin("http://hooks.example:8080/")


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://hooks.example/{tenant}", True),
        ("http://{tenant}.hooks.example/x", True),
        ("ftp://hooks.example/", False),
        ("https:///nohost", False),
        ("https://hooks.example/{other}", False),
        ("https://hooks.example/{tenant", False),
    ],
)
def test_one_url_rule(url: str, ok: bool) -> None:
    """One rule for every webhook URL, from the TOML file or a subscriptions table."""
    if ok:
        assert check_url_template(url) == url
    else:
        with pytest.raises(ValueError, match="URL"):
            check_url_template(url)


def test_a_tenant_in_the_host_makes_the_url_untrusted() -> None:
    """{tenant} in the host (not the path) means the record chooses where we connect."""
    assert host_is_templated("https://{tenant}.hooks.example/x")
    assert not host_is_templated("https://hooks.example/{tenant}/x")
