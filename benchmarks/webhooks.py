"""Webhooks: the shared keep-alive pool vs a new connection per request, HTTP and TLS.

8 threads deliver 1,600 records to a local receiver through the webhook consumer's own
delivery path; the baseline opens a connection for every request (what a loop calling
``requests.post`` without a session does)."""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from collections.abc import Callable

import urllib3

from consumers.webhook import WebhookConsumer, build, encode_body
from processor.core.consumer import ConsumerContext, StreamInfo
from processor.core.records import StreamRecord
from processor.http import HttpPool
from processor.testing import WebhookReceiver, make_record, self_signed_certificate

CONCURRENCY = 8
REQUESTS = 1600
RECORDS = [
    make_record(
        {"pk": {"S": f"TENANT#{i % 7}"}, "sk": {"S": f"{i}"}},
        new_image={"pk": {"S": f"TENANT#{i % 7}"}, "sk": {"S": f"{i}"}, "n": {"N": "12.50"}},
    )
    for i in range(REQUESTS)
]


def _context(http: urllib3.PoolManager) -> ConsumerContext:
    stop = threading.Event()
    return ConsumerContext(
        route="bench",
        config_key="routes.0",
        stream=StreamInfo("arn", "orders", "NEW_AND_OLD_IMAGES", ("pk", "sk")),
        clients=None,
        http=http,
        memory_caches={},
        sleep=lambda s: None,
        stop=stop,
    )


def _pool(ca: str | None, size: int) -> HttpPool:
    kwargs = {"cert_reqs": "CERT_REQUIRED", "ca_certs": ca} if ca else {}
    return HttpPool(maxsize=size, block=True, retries=False, **kwargs)


def _run(deliver: Callable[[StreamRecord], None]) -> tuple[float, list[float]]:
    latencies: list[float] = []
    lock = threading.Lock()

    def worker(part: list[StreamRecord]) -> None:
        mine = []
        for record in part:
            started = time.perf_counter()
            deliver(record)
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    parts = [RECORDS[i::CONCURRENCY] for i in range(CONCURRENCY)]
    threads = [threading.Thread(target=worker, args=(p,)) for p in parts]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return REQUESTS / (time.perf_counter() - started), latencies


def compare(*, tls: bool, rounds: int = 3) -> tuple[str, dict[str, float]]:
    """(name, figures) for pooled vs new connection per request."""
    with tempfile.TemporaryDirectory() as tmp:
        cert = self_signed_certificate(tmp) if tls else None
        with WebhookReceiver(tls=cert) as receiver:
            url = f"{receiver.url}/bench"
            ca = cert[0] if cert else None
            pooled_consumer = build({"url": url}, _context(_pool(ca, CONCURRENCY)))

            def post(consumer: WebhookConsumer, record: StreamRecord) -> None:
                (subscription,) = consumer.subscriptions.lookup(None, "INSERT")
                consumer.deliver(record, subscription, encode_body(record, table_name="bench"))

            def pooled(record: StreamRecord) -> None:
                post(pooled_consumer, record)

            def fresh(record: StreamRecord) -> None:
                post(build({"url": url}, _context(_pool(ca, 1))), record)

            results: dict[str, list[tuple[float, list[float]]]] = {"pooled": [], "fresh": []}
            for _ in range(rounds):
                results["fresh"].append(_run(fresh))
                results["pooled"].append(_run(pooled))
            figures: dict[str, float] = {}
            for name, runs in results.items():
                figures[f"{name}_rps"] = statistics.median(r for r, _ in runs)
                lat = sorted(x for _, lats in runs for x in lats)
                figures[f"{name}_p50_ms"] = lat[len(lat) // 2] * 1000
                figures[f"{name}_p99_ms"] = lat[int(len(lat) * 0.99)] * 1000
            figures["connections_pooled"] = float(pooled_consumer.connections_opened())
    return ("TLS (self-signed, verified)" if tls else "HTTP/1.1 keep-alive"), figures
