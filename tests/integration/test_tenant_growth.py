"""Tenants are untrusted and unbounded in number: the state and labels we keep for them are not."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from consumers.cache import build as build_cache
from consumers.webhook import MAX_BREAKERS, build
from processor.core.dispatch import Dispatcher
from processor.core.records import StreamRecord
from processor.core.retry import RetryPolicy
from processor.core.routing import Route
from processor.core.tenancy import OTHER_TENANTS, TenantStats
from processor.ops.metrics import Metrics
from processor.testing import WebhookReceiver, make_record
from processor.webhooks.flow import MAX_TENANT_BUCKETS, TokenBuckets
from tests.unit.core.test_dispatch import ListSink

from .helpers import context


def records_for(tenants: range) -> list[StreamRecord]:
    out = []
    for i in tenants:
        record = make_record({"pk": {"S": f"TENANT#t{i}"}, "sk": {"S": "1"}}, event_id=f"evt-{i}")
        record.tenant = f"t{i}"
        out.append(record)
    return out


def tenant_labels(exposition: bytes) -> set[str]:
    return {
        sample.labels["tenant"]
        for family in text_string_to_metric_families(exposition.decode())
        for sample in family.samples
        if sample.name == "dsp_tenant_records_total"
    }


@pytest.mark.slow
def test_many_tenants_leave_bounded_state_and_metrics(receiver: WebhookReceiver) -> None:
    """12,000 tenants through webhook (per-tenant rate limits) and cache routes: /metrics keeps
    100 tenant labels plus "other", token buckets stop at their cap, every record delivered."""
    webhook_ctx, cache_ctx = context(), context()
    webhook = build(
        {"url": f"{receiver.url}/t/{{tenant}}", "tenant_rate_per_s": 1000.0, "concurrency": 4},
        webhook_ctx,
    )
    cache = build_cache({"keys": ["order:{tenant}:{pk}"]}, cache_ctx)
    stats = {"hooks": webhook_ctx.stats, "cache": cache_ctx.stats}
    tenant_stats = TenantStats(max_tenants=100)
    dispatcher = Dispatcher(
        [Route("hooks", webhook), Route("cache", cache)],
        ListSink(),
        RetryPolicy(max_retries=0),
        stats=stats,
        stop=threading.Event(),
        tenant_stats=tenant_stats,
    )
    metrics = Metrics(stats, tenants=tenant_stats)
    tenants = 12_000
    dispatcher.dispatch(records_for(range(10)))
    small = len(metrics.exposition())
    for start in range(10, tenants, 500):
        dispatcher.dispatch(records_for(range(start, min(start + 500, tenants))))
    exposition = metrics.exposition()
    labels = tenant_labels(exposition)
    assert len(labels) == 100 + 1  # 100 tenants and "other"
    assert OTHER_TENANTS in labels
    assert len(exposition) < 2 * small + 20_000, (small, len(exposition))
    sizes = webhook.state_sizes()
    assert sizes["tenant_buckets"] == MAX_TENANT_BUCKETS
    assert sizes["partial_markers"] == 0
    assert len(receiver.received()) == tenants
    print(f"/metrics: {small} bytes after 10 tenants, {len(exposition)} after {tenants}")


def test_breakers_are_bounded_by_host_count() -> None:
    """A breaker per host, at most MAX_BREAKERS of them, the least recently used forgotten."""
    consumer = build({"url": "http://127.0.0.1:9/x"}, context())
    for i in range(MAX_BREAKERS + 500):
        consumer.breaker(f"https://h{i}.hooks.example/x")
    assert consumer.state_sizes()["breakers"] == MAX_BREAKERS
    first_kept = consumer.breaker("https://h1499.hooks.example/x")
    assert consumer.breaker("https://h1499.hooks.example/x") is first_kept


def test_token_buckets_forget_the_least_recently_used_tenant() -> None:
    """Past max_tenants, the tenant not seen for longest loses its bucket (it restarts full)."""
    now = [0.0]
    buckets = TokenBuckets(1.0, 1, clock=lambda: now[0], max_tenants=3)
    for tenant in ("a", "b", "c"):
        assert buckets.try_take(tenant) == 0.0
    assert buckets.try_take("a") > 0  # a is out of tokens, and now the most recently used
    assert buckets.try_take("d") == 0.0  # b, the least recently used, is forgotten
    assert buckets.tenants() == 3
    assert buckets.try_take("a") > 0  # a kept its (empty) bucket
    assert buckets.try_take("b") == 0.0  # b starts afresh


def test_tenant_labels_never_move() -> None:
    """The first N tenants keep their label for good; later ones are counted as "other"."""
    stats = TenantStats(max_tenants=2)
    for tenant in ("a", "b", "c", "a", "d"):
        stats.add("r", tenant, "routed")
    snapshot: dict[Any, int] = stats.snapshot()
    assert snapshot == {
        ("r", "a", "routed"): 2,
        ("r", "b", "routed"): 1,
        ("r", OTHER_TENANTS, "routed"): 2,
    }
