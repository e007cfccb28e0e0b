"""Tenant webhook URLs cannot reach the private network (SSRF), proven on loopback only.

Loopback receivers stand in for internal services. Other addresses appear only as answers
of a resolver double, and the HTTP pool used in those tests refuses to connect anywhere but
loopback, so a broken guard fails the test instead of sending traffic.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import urllib3

from consumers.webhook import build
from processor.core.dispatch import Dispatcher
from processor.core.records import StreamRecord
from processor.core.retry import RetryPolicy
from processor.core.routing import Route
from processor.http import HttpPool
from processor.testing import WebhookReceiver, create_table, make_record, self_signed_certificate
from processor.webhooks.egress import EgressPolicy, system_resolver
from tests.unit.core.test_dispatch import ListSink

from .helpers import context

#: ten spellings of "this machine" that reached a loopback receiver before the guard
LOOPBACK_SPELLINGS = [
    "127.0.0.1",
    "localhost",
    "[::1]",
    "[::]",
    "0.0.0.0",
    "127.1",
    "0177.0.0.1",
    "0x7f.0.0.1",
    "2130706433",
    "[::ffff:127.0.0.1]",
]


class LoopbackOnlyPool(HttpPool):
    """The safety net: a connection anywhere but loopback fails the test before it is made."""

    def connection_from_host(self, host: str | None, *args: Any, **kwargs: Any) -> Any:
        assert host is not None
        assert ipaddress.ip_address(host.strip("[]")).is_loopback, host
        return super().connection_from_host(host, *args, **kwargs)

    def connection_from_url(self, url: str, pool_kwargs: Any = None) -> Any:
        host = urllib3.util.parse_url(url).host or ""
        assert ipaddress.ip_address(system_resolver(host.strip("[]"), 80)[0]).is_loopback, url
        return super().connection_from_url(url, pool_kwargs)


def rec(tenant: str, i: int = 0) -> StreamRecord:
    record = make_record(
        {"pk": {"S": f"TENANT#{tenant}"}, "sk": {"S": str(i)}}, event_id=f"evt-{tenant}-{i}"
    )
    record.tenant = tenant
    return record


def subscriptions_table(dynamodb: Any, name: str, urls: dict[str, str]) -> str:
    """A subscriptions table whose items (tenant -> url) tenants wrote themselves."""
    create_table(dynamodb, name, keys=("tenant",), stream_view=None)
    for tenant, url in urls.items():
        dynamodb.put_item(TableName=name, Item={"tenant": {"S": tenant}, "url": {"S": url}})
    return name


def consumer_for(endpoint: str, table: str, policy: EgressPolicy, **options: Any) -> Any:
    ctx = dataclasses.replace(
        context(endpoint=endpoint, http=LoopbackOnlyPool(retries=False)), egress=policy
    )
    return build({"subscriptions_table": table, "max_attempts": 1, **options}, ctx), ctx


@pytest.fixture
def internal() -> Any:
    """An "internal service" listening on 127.0.0.1 and ::1 on one port."""
    with WebhookReceiver() as v4, WebhookReceiver(host="::1", port=v4.port) as v6:
        yield v4, v6


def test_every_spelling_of_loopback_is_refused_by_default(
    endpoint: str, dynamodb: Any, unique: str, internal: tuple[WebhookReceiver, WebhookReceiver]
) -> None:
    """No request reaches the internal service; each record is rejected naming the address."""
    v4, v6 = internal
    urls = {f"t{i}": f"http://{h}:{v4.port}/admin" for i, h in enumerate(LOOPBACK_SPELLINGS)}
    table = subscriptions_table(dynamodb, f"subs-{unique}", urls)
    consumer, ctx = consumer_for(endpoint, table, EgressPolicy())
    result = consumer([rec(tenant) for tenant in urls])
    assert v4.attempts == []
    assert v6.attempts == []
    assert set(result.rejected) == {f"evt-{t}-0" for t in urls}
    for reason in result.rejected.values():
        assert reason.startswith("destination_not_allowed: ")
        assert any(w in reason for w in ("loopback", "unspecified")), reason
    assert "(127.0.0.1)" in result.rejected["evt-t8-0"]  # 2130706433, resolved and named
    assert ctx.stats.snapshot()["destination_refused"] == len(urls)


def test_allowed_networks_admit_exactly_the_listed_networks(
    endpoint: str, dynamodb: Any, unique: str, internal: tuple[WebhookReceiver, WebhookReceiver]
) -> None:
    """Admitting 127.0.0.0/8 delivers to IPv4 loopback in any spelling, never to [::1], [::],
    0.0.0.0 or the IPv4-mapped form."""
    v4, v6 = internal
    spellings = [h for h in LOOPBACK_SPELLINGS if h != "localhost"]  # /etc/hosts decides it
    urls = {f"t{i}": f"http://{h}:{v4.port}/in" for i, h in enumerate(spellings)}
    table = subscriptions_table(dynamodb, f"subs-{unique}", urls)
    policy = EgressPolicy(allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),))
    consumer, _ = consumer_for(endpoint, table, policy)
    result = consumer([rec(tenant) for tenant in urls])
    delivered = {"127.0.0.1", "127.1", "0177.0.0.1", "0x7f.0.0.1", "2130706433"}
    assert len(v4.received()) == len(delivered)
    assert v6.attempts == []
    refused = {spellings[int(e.split("-")[1][1:])] for e in result.rejected}
    assert refused == set(spellings) - delivered
    hosts = {r.headers["Host"] for r in v4.received()}
    assert hosts == {f"{h}:{v4.port}" for h in delivered}  # the URL's host, not the address


def test_the_checked_address_is_the_one_connected_to(
    endpoint: str, dynamodb: Any, unique: str
) -> None:
    """DNS rebinding: the double answers an admitted address, then the internal one; the
    request goes to the address that was checked, with the name in the Host header."""
    with (
        WebhookReceiver(host="127.0.0.2") as tenant_server,
        WebhookReceiver(port=tenant_server.port) as internal_service,
    ):
        answers = [["127.0.0.2"]]

        def rebinding(host: str, port: int) -> Sequence[str]:
            assert host == "hooks.tenant.test"
            return answers.pop() if answers else ["127.0.0.1"]

        url = f"http://hooks.tenant.test:{tenant_server.port}/hook"
        table = subscriptions_table(dynamodb, f"subs-{unique}", {"acme": url})
        policy = EgressPolicy(
            allowed_networks=(ipaddress.ip_network("127.0.0.2/32"),), resolve=rebinding
        )
        consumer, _ = consumer_for(endpoint, table, policy)
        assert consumer([rec("acme")]) is None
        assert internal_service.attempts == []
        (request,) = tenant_server.received()
        assert request.headers["Host"] == f"hooks.tenant.test:{tenant_server.port}"
        # the next delivery resolves again, gets the internal address and is refused
        result = consumer([rec("acme", 1)])
        assert "(127.0.0.1)" in result.rejected["evt-acme-1"]
        assert internal_service.attempts == []


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (["10.1.2.3"], "private"),
        (["169.254.169.254"], "link-local"),
        (["fd00:ec2::254"], "private"),
        (["100.64.0.9"], "CGNAT"),
        (["93.184.216.34", "192.168.1.5"], "private"),  # one bad answer refuses the name
    ],
)
def test_a_name_resolving_inward_is_refused_without_a_connection(
    endpoint: str, dynamodb: Any, unique: str, answer: list[str], words: str
) -> None:
    """A DNS name that resolves to a non-public address is refused before any connection."""
    table = subscriptions_table(dynamodb, f"subs-{unique}", {"acme": "https://hooks.tenant.test/x"})
    policy = EgressPolicy(resolve=lambda host, port: answer)
    consumer, ctx = consumer_for(endpoint, table, policy)
    result = consumer([rec("acme")])
    (reason,) = result.rejected.values()
    assert reason.startswith("destination_not_allowed: hooks.tenant.test (")
    assert words in reason
    assert ctx.stats.snapshot().get("attempts", 0) == 0


def test_tls_uses_the_original_host_for_sni_and_the_certificate(
    tmp_path: Path, endpoint: str, dynamodb: Any, unique: str
) -> None:
    """Connecting to the pinned address still verifies the certificate for the URL's host."""
    cert, key = self_signed_certificate(tmp_path, names=["hooks.tenant.test"])
    with WebhookReceiver(tls=(cert, key), host="127.0.0.2") as server:
        url = f"https://hooks.tenant.test:{server.port}/secure"
        table = subscriptions_table(dynamodb, f"subs-{unique}", {"acme": url, "evil": url})
        policy = EgressPolicy(
            allowed_networks=(ipaddress.ip_network("127.0.0.2/32"),),
            resolve=lambda host, port: ["127.0.0.2"],
        )
        ctx = dataclasses.replace(
            context(
                endpoint=endpoint,
                http=LoopbackOnlyPool(retries=False, cert_reqs="CERT_REQUIRED", ca_certs=cert),
            ),
            egress=policy,
        )
        consumer = build({"subscriptions_table": table, "max_attempts": 1}, ctx)
        assert consumer([rec("acme")]) is None
        (request,) = server.received()
        assert request.headers["Host"] == f"hooks.tenant.test:{server.port}"


def test_redirects_are_never_followed(endpoint: str, dynamodb: Any, unique: str) -> None:
    """A 302 is a failed delivery with its status; the Location is never requested."""
    with WebhookReceiver() as server:
        server.script("/start", [302], headers={"Location": f"{server.url}/inside"})
        table = subscriptions_table(dynamodb, f"subs-{unique}", {"acme": f"{server.url}/start"})
        policy = EgressPolicy(allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),))
        consumer, ctx = consumer_for(endpoint, table, policy)
        sink = ListSink()
        dispatcher = Dispatcher(
            [Route("hooks", consumer)],
            sink,
            RetryPolicy(max_retries=0),
            stats={"hooks": ctx.stats},
            stop=threading.Event(),
        )
        dispatcher.dispatch([rec("acme")])
        assert [request.path for request, _ in server.attempts] == ["/start"]
        (letter,) = sink.entries
        assert "HTTP 302" in letter.error_message


def test_https_only_refuses_plain_http_tenant_urls(
    endpoint: str, dynamodb: Any, unique: str
) -> None:
    """[http] tenant_https_only refuses http:// tenant URLs before resolving them."""
    with WebhookReceiver() as server:
        table = subscriptions_table(dynamodb, f"subs-{unique}", {"acme": f"{server.url}/x"})
        policy = EgressPolicy(
            allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),), https_only=True
        )
        consumer, _ = consumer_for(endpoint, table, policy)
        result = consumer([rec("acme")])
        assert "tenant_https_only" in result.rejected["evt-acme-0"]
        assert server.attempts == []


def test_operator_urls_are_trusted_unless_guarded(endpoint: str) -> None:
    """A URL from the TOML file reaches loopback; with guard_operator_urls it is refused."""
    with WebhookReceiver() as server:
        for guard, delivered in ((False, 1), (True, 0)):
            ctx = dataclasses.replace(context(), egress=EgressPolicy(guard_operator_urls=guard))
            consumer = build({"url": f"{server.url}/op{guard}", "max_attempts": 1}, ctx)
            consumer([rec("acme", int(guard))])
            assert len(server.received(f"/op{guard}")) == delivered


def test_a_tenant_filled_host_is_guarded(endpoint: str) -> None:
    """An operator URL whose host is filled in from a record is untrusted."""
    ctx = dataclasses.replace(context(), egress=EgressPolicy(resolve=lambda h, p: ["127.0.0.1"]))
    consumer = build({"url": "http://{tenant}.hooks.test:9/x", "max_attempts": 1}, ctx)
    result = consumer([rec("acme")])
    assert result is not None
    assert result.rejected["evt-acme-0"].startswith("destination_not_allowed: acme.hooks.test")


def test_the_guard_keeps_one_delivery_per_record_under_concurrency(
    endpoint: str, dynamodb: Any, unique: str
) -> None:
    """Guarded deliveries still run concurrently through the shared pool, one POST each."""
    with WebhookReceiver() as server:
        table = subscriptions_table(dynamodb, f"subs-{unique}", {"acme": f"{server.url}/c"})
        policy = EgressPolicy(allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),))
        consumer, _ = consumer_for(endpoint, table, policy, concurrency=4)
        records = [rec("acme", i) for i in range(20)]
        threads = [threading.Thread(target=consumer, args=([r],)) for r in records[:4]]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert consumer(records[4:]) is None
        assert len(server.received("/c")) == 20
