"""Tenant fairness in webhook delivery: a quiet tenant's latency when a noisy tenant sends 10x
its traffic in the same batches, with our round-robin scheduler vs strict stream order (FIFO),
against a local receiver that takes 5 ms per request. Latency is from the start of the
consumer call to the receiver's receipt; one warm-up batch (threads, connections) first."""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections.abc import Sequence
from typing import Any

from consumers.webhook import build
from processor.core.consumer import ConsumerContext, StreamInfo
from processor.core.records import StreamRecord
from processor.http import HttpPool
from processor.testing import WebhookReceiver, make_record

BATCHES = 50
QUIET_PER_BATCH = 5
NOISY_PER_BATCH = 50
CONCURRENCY = 4
RECEIVER_DELAY_S = 0.005


def _context(pool_size: int) -> ConsumerContext:
    return ConsumerContext(
        route="bench",
        config_key="routes.0",
        stream=StreamInfo("arn:x", "bench", "NEW_AND_OLD_IMAGES", ("pk", "sk")),
        clients=None,
        http=HttpPool(maxsize=pool_size, block=True, retries=False),
        memory_caches={},
        sleep=lambda _s: None,
        stop=threading.Event(),
    )


def _batch(rng: random.Random, number: int, *, fair: bool) -> list[StreamRecord]:
    tenants = ["noisy"] * NOISY_PER_BATCH + ["quiet"] * QUIET_PER_BATCH
    rng.shuffle(tenants)  # quiet records at random places in stream order
    out = []
    for i, tenant in enumerate(tenants):
        record = make_record(
            {"pk": {"S": f"TENANT#{tenant}"}, "sk": {"S": f"{number}-{i}"}},
            event_id=f"{tenant}-{number}-{i}",
        )
        # FIFO baseline: the scheduler sees one tenant, so it keeps stream order
        record.tenant = tenant if fair else None
        out.append(record)
    return out


def _quiet_latencies(
    *, fair: bool, noisy: bool, options: dict[str, Any] | None = None
) -> list[float]:
    rng = random.Random(7)
    latencies: list[float] = []
    with WebhookReceiver() as receiver:
        receiver.script("/h", [200], delay_s=RECEIVER_DELAY_S)
        consumer = build(
            {"url": f"{receiver.url}/h", "concurrency": CONCURRENCY, **(options or {})},
            _context(CONCURRENCY),
        )
        consumer(_batch(rng, -1, fair=fair))  # warm-up: threads, connections
        for number in range(BATCHES):
            records: Sequence[StreamRecord] = _batch(rng, number, fair=fair)
            if not noisy:
                records = [r for r in records if r.event_id.startswith("quiet")]
            before = len(receiver.received())
            started = time.monotonic()
            consumer(records)
            for request in receiver.received()[before:]:
                if request.json()["event_id"].startswith("quiet"):
                    latencies.append((request.received_at - started) * 1000)
        consumer.close()
    return sorted(latencies)


def rows() -> list[str]:
    cases = [
        ("quiet tenant alone", _quiet_latencies(fair=True, noisy=False)),
        (
            "with a 10x noisy tenant, strict stream order (FIFO)",
            _quiet_latencies(fair=False, noisy=True),
        ),
        (
            "with a 10x noisy tenant, round-robin across tenants (ours)",
            _quiet_latencies(fair=True, noisy=True),
        ),
        (
            "with a 10x noisy tenant held to 200/s, round-robin (ours)",
            _quiet_latencies(fair=True, noisy=True, options={"tenant_rates": {"noisy": 200.0}}),
        ),
    ]
    lines = [
        f"| webhook fairness: quiet tenant latency, {BATCHES} batches of {QUIET_PER_BATCH} quiet "
        f"+ {NOISY_PER_BATCH} noisy, {CONCURRENCY} connections, receiver 5 ms "
        "| p50 ms | p95 ms | p99 ms | vs alone (p95) |",
        "|---|---:|---:|---:|---:|",
    ]
    alone_p95 = statistics.quantiles(cases[0][1], n=100)[94]
    for name, lat in cases:
        q = statistics.quantiles(lat, n=100)
        lines.append(
            f"| {name} | {q[49]:.1f} | {q[94]:.1f} | {q[98]:.1f} | {q[94] / alone_p95:.1f}x |"
        )
    return lines
