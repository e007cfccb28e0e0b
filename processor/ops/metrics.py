"""Prometheus metrics and the health endpoints, on one port (``[observability] metrics_port``).

Counters are read at scrape time from what the engine already counts (``RouteStats``, the
worker's summary and readers, the webhook pool), so the hot path pays nothing for them; only
consumer call latency is observed as it happens. Exposition uses the standard client.

    /metrics   Prometheus text format
    /healthz   200 while the worker's main loop is alive
    /readyz    200 while leases are held and every owned shard was polled recently
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from processor.core.consumer import RouteStats
from processor.core.tenancy import TenantStats
from processor.runtime.snapshot import WorkerSnapshot
from processor.settings.sections import DEFAULT_STREAM

__all__ = ["HealthServer", "Metrics"]

#: RouteStats names exported as dsp_records_total{route, outcome}
_OUTCOMES = ("delivered", "filtered", "dead_lettered", "too_old", "unhandled")


def _worker_families(states: Mapping[str, WorkerSnapshot]) -> Iterable[Metric]:
    """Each stream's worker's figures (label ``stream``): reading, leases, lag, retries,
    failures; and the reader pool the streams share."""
    read = CounterMetricFamily(
        "dsp_records_read", "Records read from the stream", labels=["stream"]
    )
    leases = CounterMetricFamily(
        "dsp_lease_events", "Lease changes of this process", labels=["stream", "event"]
    )
    owned = GaugeMetricFamily(
        "dsp_leases_owned", "Shards this process reads now", labels=["stream"]
    )
    age = GaugeMetricFamily(
        "dsp_iterator_age_seconds",
        "How far behind the shard's tip: Kinesis' MillisBehindLatest, or now minus the "
        "creation time of the last record read (0 when caught up)",
        labels=["stream", "shard"],
    )
    stream_retries = CounterMetricFamily(
        "dsp_stream_retries",
        "Stream call retries (after botocore's own) by cause: throttling, 5xx, ...",
        labels=["stream", "cause"],
    )
    failures = CounterMetricFamily(
        "dsp_reader_failures",
        "Shard readers that ended with an error (the shard is taken again at a later scan)",
        labels=["stream"],
    )
    unowned = GaugeMetricFamily(
        "dsp_shards_unowned",
        "Ready shards that no live worker owns, as of this worker's last lease scan",
        labels=["stream"],
    )
    table = GaugeMetricFamily(
        "dsp_leases",
        "The application's leases at this worker's last scan, by state: owned (a live owner), "
        "free, finished, trimmed_unread (unfinished, its shard gone from the stream)",
        labels=["stream", "state"],
    )
    scanned = GaugeMetricFamily(
        "dsp_lease_scan_items",
        "Items this worker's last lease scan read (cleanup keeps it near the live stream's)",
        labels=["stream"],
    )
    deleted = CounterMetricFamily(
        "dsp_leases_deleted",
        "Leases this worker's cleanup deleted, by reason: children_started, left_stream, "
        "trimmed_unread",
        labels=["stream", "reason"],
    )
    skipped = CounterMetricFamily(
        "dsp_trimmed_ranges_skipped",
        "Trimmed ranges skipped (on_trimmed = skip)",
        labels=["stream"],
    )
    for name, state in states.items():
        read.add_metric([name], state["records_read"])
        leases.add_metric([name, "taken"], state["leases_taken"])
        leases.add_metric([name, "lost"], state["leases_lost"])
        leases.add_metric([name, "handed_off"], state["leases_handed_off"])
        leases.add_metric([name, "stolen"], state["leases_stolen"])
        owned.add_metric([name], len(state["shards"]))
        for shard in state["shards"]:
            age.add_metric([name, shard["shard_id"]], shard["lag_s"])
        for cause, count in state["stream_retries"].items():
            stream_retries.add_metric([name, cause], count)
        failures.add_metric([name], state["reader_failures"])
        unowned.add_metric([name], state["shards_unowned"])
        for lease_state, count in sorted(state["leases"].items()):
            table.add_metric([name, lease_state], count)
        scanned.add_metric([name], state["lease_scan_items"])
        for reason in ("children_started", "left_stream", "trimmed_unread"):
            deleted.add_metric([name, reason], state["leases_deleted"].get(reason, 0))
        skipped.add_metric([name], state["trimmed_skips"])
    yield from (read, leases, owned, age, stream_retries, failures, unowned)
    state = next(iter(states.values()))  # the pool is the streams' one
    threads = GaugeMetricFamily(
        "dsp_reader_threads",
        "The reader pool's threads: its bound (limit) and those running a reader now (busy)",
        labels=["state"],
    )
    threads.add_metric(["limit"], state["reader_threads"])
    threads.add_metric(["busy"], state["readers_busy"])
    yield threads
    yield GaugeMetricFamily(
        "dsp_readers_queued",
        "Readers due to run but waiting for a free reader thread (stream.reader_threads)",
        value=state["readers_queued"],
    )
    yield from (table, scanned, deleted, skipped)


class _EngineCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def collect(self) -> Iterable[Metric]:
        records = CounterMetricFamily(
            "dsp_records",
            "Records per stream and route by outcome",
            labels=["stream", "route", "outcome"],
        )
        retries = CounterMetricFamily(
            "dsp_retries",
            "Consumer retries per stream and route by cause",
            labels=["stream", "route", "cause"],
        )
        consumer = CounterMetricFamily(
            "dsp_consumer_events",
            "What each consumer did (puts, posts, ...)",
            labels=["stream", "route", "event"],
        )
        for stream, by_route in self._m.stream_stats().items():
            for route, stats in by_route.items():
                for name, value in stats.snapshot().items():
                    if name in _OUTCOMES:
                        records.add_metric([stream, route, name], value)
                    elif name.startswith("retry:"):
                        retries.add_metric([stream, route, name.split(":", 1)[1]], value)
                    elif name not in ("retries", "calls", "bisections"):
                        consumer.add_metric([stream, route, name], value)
        yield records
        yield retries
        yield consumer
        if self._m.tenants is not None:
            per_tenant = CounterMetricFamily(
                "dsp_tenant_records",
                "Records per route and tenant by outcome (routed, dead_lettered, skipped); "
                'tenant "-" is none, route "-" is before routing',
                labels=["route", "tenant", "outcome"],
            )
            for (route, tenant, outcome), value in sorted(self._m.tenants.snapshot().items()):
                per_tenant.add_metric([route, tenant, outcome], value)
            yield per_tenant
        worker = self._m.worker
        if worker is not None:
            states = getattr(worker, "states", None)
            by_stream = states() if callable(states) else {DEFAULT_STREAM: worker.state()}
            yield from _worker_families(by_stream)
        if self._m.http is not None:
            new = int(getattr(self._m.http, "connections_opened", 0))
            reused = max(0, int(getattr(self._m.http, "requests_sent", 0)) - new)
            connections = CounterMetricFamily(
                "dsp_webhook_connections", "Webhook pool connections", labels=["kind"]
            )
            connections.add_metric(["new"], new)
            connections.add_metric(["reused"], reused)
            yield connections


class Metrics:
    """The process's registry. ``observe_call`` is handed to the dispatchers."""

    def __init__(
        self,
        route_stats: Mapping[str, RouteStats],
        *,
        http: Any = None,
        tenants: TenantStats | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self.route_stats = route_stats
        self.tenants = tenants
        self.http = http
        #: per stream, its routes' figures (None: ``route_stats`` is the one stream's)
        self.streams: Mapping[str, Mapping[str, RouteStats]] | None = None
        self.worker: Any = None  # set once the worker exists (it exposes state())
        self._latency = Histogram(
            "dsp_consumer_call_seconds",
            "Duration of one consumer call",
            ["stream", "route"],
            registry=self.registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.registry.register(_EngineCollector(self))

    def observe_call(self, route: str, seconds: float, *, stream: str = DEFAULT_STREAM) -> None:
        self._latency.labels(stream, route).observe(seconds)

    def stream_stats(self) -> Mapping[str, Mapping[str, RouteStats]]:
        """Each stream's routes' figures."""
        return self.streams if self.streams is not None else {DEFAULT_STREAM: self.route_stats}

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class HealthServer:
    """/metrics, /healthz and /readyz on ``port`` (0: a free one) of ``host``."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        alive: Callable[[], bool],
        ready: Callable[[], tuple[bool, str]],
        host: str = "0.0.0.0",  # noqa: S104 - probes and scrapers come from outside the container
        port: int = 0,
    ) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    status, body, kind = 200, metrics.exposition(), "text/plain; version=0.0.4"
                elif self.path == "/healthz":
                    ok = alive()
                    status, body, kind = (
                        (200 if ok else 503),
                        (b"ok\n" if ok else b"stalled\n"),
                        "text/plain",
                    )
                elif self.path == "/readyz":
                    ok, why = ready()
                    status, body, kind = (200 if ok else 503), (why + "\n").encode(), "text/plain"
                else:
                    status, body, kind = 404, b"not found\n", "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.1,), daemon=True, name="dsp-health"
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def monotonic_age(since: float, now: Callable[[], float] = time.monotonic) -> float:
    return now() - since
