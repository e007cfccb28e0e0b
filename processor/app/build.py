"""The composition root: settings in, a ready-to-run worker out.

Only this module (and the CLI above it) wires concrete adapters together; everything below
takes its collaborators as arguments.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
import urllib3

from processor.app.pipeline import Pipeline
from processor.app.routes import (
    build_routes,
    close_routes,
    consumer_connections,
    make_dead_letter_sink,
)
from processor.app.streams import (
    describe_pacer,
    reader_threads,
    resolve,
    stream_settings,
    worker_settings,
)
from processor.aws import AwsClients, clients_for
from processor.core.consumer import (
    RouteStats,
    StreamInfo,
)
from processor.core.dead_letters import DeadLetterSink
from processor.core.dispatch import Dispatcher
from processor.core.routing import Route
from processor.core.tenancy import TenantStats
from processor.http import make_http_pool
from processor.kclpy_daemon.shard import ChildTarget
from processor.leases.dynamodb import DynamoDBLeaseStore
from processor.leases.model import Lease, LeaseStore
from processor.ops.metrics import Metrics
from processor.runtime.fleet import Fleet, SharedPool
from processor.runtime.rate import RateLimiter
from processor.runtime.reader import RecordWindow
from processor.runtime.targets import ShardTarget
from processor.runtime.worker import RENEWAL_THREADS, PositionFor, Worker
from processor.settings import Settings, StreamSettings
from processor.settings.sections import DEFAULT_STREAM
from processor.sources.base import StreamSource

__all__ = [
    "OFFLINE_UNCHECKED",
    "App",
    "StreamRun",
    "SummedStats",
    "build_app",
    "check_config",
    "process_clients",
    "stream_arn_for",
    "stream_source",
    "worker_settings",
]

log = structlog.get_logger()


#: Reader and renewal threads share one boto3 client; botocore's pool must cover them all
#: plus the main loop and the consumers' own calls.
_EXTRA_CONNECTIONS = 8


class SummedStats(RouteStats):
    """A route's figures over every stream it takes (read-only: the parts are counted)."""

    def __init__(self, parts: list[RouteStats]) -> None:
        super().__init__()
        self.parts = parts

    def add(self, name: str, amount: float = 1) -> None:
        raise TypeError("count in a stream's own RouteStats")

    def snapshot(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for part in self.parts:
            total.update(part.snapshot())
        return dict(total)

    def __getitem__(self, name: str) -> int:
        return self.snapshot().get(name, 0)


@dataclass(slots=True)
class StreamRun:
    """One stream of the process: what it is, its routes and their figures, its worker."""

    name: str
    info: StreamInfo
    arn: str
    routes: list[Route]
    stats: dict[str, RouteStats]
    worker: Worker


@dataclass(slots=True)
class App:
    """Everything a run needs, built and validated."""

    settings: Settings
    #: every stream's worker on one main loop (one stream: a fleet of one)
    worker: Fleet
    metrics: Metrics
    #: the first stream (the only one of a single [stream])
    stream: StreamInfo
    #: every route object of every stream
    routes: list[Route]
    #: per route, over every stream it takes
    stats: dict[str, RouteStats]
    clients: AwsClients
    http: urllib3.PoolManager
    #: the dead-letter destination, checked writable at build (one per process)
    sink: DeadLetterSink
    streams: dict[str, StreamRun] = field(default_factory=dict)
    memory_caches: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        close_routes(self.routes, self.http)


def process_clients(settings: Settings) -> AwsClients:
    """The process's AWS clients, their connection pool sized for every thread that may
    call at once (readers, renewals, the main loop, the consumers' own calls)."""
    cap = settings.checkpoints.max_leases
    threads = reader_threads(settings)
    readers = threads if cap is None else min(cap * len(settings.named_streams), threads)
    renewals = RENEWAL_THREADS * len(settings.named_streams)
    if cap is not None:
        renewals = min(cap, RENEWAL_THREADS) * len(settings.named_streams)
    pool = readers + renewals + _EXTRA_CONNECTIONS + consumer_connections(settings)
    return clients_for(settings.aws, pool_size=min(pool, 200))


#: what `dsp check-config --offline` cannot know without AWS
OFFLINE_UNCHECKED = (
    "the stream (stream.table / stream.arn), its view type and key schema (cache key "
    "fields, batch_write's images), batch_write target tables, subscriptions tables"
)


def check_config(settings: Settings, *, offline: bool = False) -> str:
    """Validate ``settings`` the way `dsp run` does before it reads anything: resolve every
    stream, then build every route (consumers, options, filters) for each stream it takes
    through :func:`build_routes`, and close them. Raises ConfigError (or the AWS error) as a
    run would. Returns a one-line summary."""
    stop = threading.Event()
    http = make_http_pool(settings)
    clients: AwsClients | None = None if offline else process_clients(settings)
    resolved: list[str] = []
    built: set[str] = set()
    for name, config in settings.named_streams:
        if clients is None:
            arn = config.arn or f"arn:aws:dynamodb:::table/{config.table}/stream/-"
            stream = StreamInfo(arn, config.table or "?", "NEW_AND_OLD_IMAGES", ())
        else:
            _, _, stream = resolve(config, clients)
            what = f"table {stream.table_name}" if stream.table_name else stream.stream_arn
            resolved.append(
                f"{'' if name == DEFAULT_STREAM else name + ': '}stream of {what} resolved: "
                f"{stream.view_type}, key {', '.join(stream.key_attributes) or '-'}"
            )
        routes, _ = build_routes(
            settings,
            stream=stream,
            clients=clients,
            http=http,
            memory_caches={},
            stop=stop,
            offline=offline,
            stream_name=name,
        )
        built.update(route.name for route in routes)
        close_routes(routes, http)
    stop.set()
    count = f"{len(built)} routes"
    if len(settings.named_streams) > 1:
        count += f", {len(settings.named_streams)} streams"
    if offline:
        return f"ok ({count}; not checked offline: {OFFLINE_UNCHECKED})"
    return f"ok ({count}; {'; '.join(resolved)})"


def stream_source(
    settings: Settings, clients: AwsClients, name: str | None = None
) -> tuple[StreamSource, str]:
    """The stream the settings read (``name``: one of several), resolved as `dsp run`
    resolves it: adapter and ARN."""
    adapter, arn, _ = resolve(stream_settings(settings, name), clients)
    return adapter, arn


def stream_arn_for(settings: Settings, clients: AwsClients, name: str | None = None) -> str:
    """The ARN of the stream the settings read (resolved as `dsp run` resolves it)."""
    return stream_source(settings, clients, name)[1]


def _dispatchers(
    pipeline: Pipeline, metrics: Metrics, tenant_stats: TenantStats, stream: str
) -> Callable[[threading.Event], Dispatcher]:
    """A Dispatcher per reader (each with its reader's stop event) over the stream's pipeline;
    consumer call times go to the metrics with the stream's name."""

    def observe(route: str, seconds: float) -> None:
        metrics.observe_call(route, seconds, stream=stream)

    def dispatcher_for(stop: threading.Event) -> Dispatcher:
        return pipeline.dispatcher(stop, observe=observe, tenant_stats=tenant_stats)

    return dispatcher_for


def _targets(
    settings: Settings, dispatcher_for: Callable[[threading.Event], Dispatcher]
) -> Callable[[Lease, threading.Event], ShardTarget] | None:
    """With [multilang], each lease drives a KCL MultiLang child (malformed records still go
    to the dead-letter sink); without, the worker's default: our routes."""
    options = settings.multilang
    if options is None:
        return None

    def target_for(lease: Lease, stop: threading.Event) -> ShardTarget:
        return ChildTarget(options, malformed=dispatcher_for(stop))

    return target_for


def build_app(
    settings: Settings,
    *,
    memory_caches: dict[str, Any] | None = None,
    consumer_stop: threading.Event | None = None,
    routes: (
        tuple[list[Route], dict[str, RouteStats]]
        | Callable[[str], tuple[list[Route], dict[str, RouteStats]]]
        | None
    ) = None,
    store_for: Callable[[str, str], LeaseStore] | None = None,
    positions: Callable[[StreamSettings], tuple[PositionFor, RecordWindow]] | None = None,
    rate: RateLimiter | None = None,
    only_shards: frozenset[str] | None = None,
) -> App:
    """Resolve every stream, build clients, routes and a worker per stream. Raises ConfigError.

    ``routes``: these instead of the configured ones, for every stream (or a stream's own,
    by name); ``store_for``: the
    lease store of a stream (its namespace, its ARN) instead of the lease table's;
    ``positions``: where a stream's shards start and which records count (a replay's range)."""
    clients = process_clients(settings)
    sink = make_dead_letter_sink(settings, clients)  # before any call: a bad path fails at once
    http = make_http_pool(settings)
    caches: dict[str, Any] = memory_caches if memory_caches is not None else {}
    stop_consumers = consumer_stop or threading.Event()
    tenant_stats = TenantStats(settings.observability.max_tenant_labels)
    metrics = Metrics({}, http=http, tenants=tenant_stats)
    several = len(settings.named_streams) > 1
    pool = SharedPool(reader_threads(settings)) if several else None
    runs: dict[str, StreamRun] = {}
    pacer = describe_pacer(settings)
    for name, config in settings.named_streams:
        adapter, stream_arn, stream = resolve(config, clients, pacer)
        override = routes(name) if callable(routes) else routes
        pipeline = Pipeline.from_settings(
            settings,
            clients=clients,
            stream=stream,
            stop=stop_consumers,
            stream_name=name,
            routes=override,
            sink=sink,
            http=http,
            memory_caches=caches,
            retention_s=adapter.retention_s,
        )
        built_routes, stats = pipeline.routes, pipeline.stats
        position_for, window = positions(config) if positions is not None else (None, None)
        namespace = settings.lease_namespace(name)
        if store_for is not None:
            store = store_for(namespace, stream_arn)
        else:
            store = DynamoDBLeaseStore(
                clients.dynamodb,
                table=settings.checkpoints.table,
                application=namespace,
                stream_arn=stream_arn,
                fast=clients.fast("dynamodb"),
            )
        dispatcher_for = _dispatchers(pipeline, metrics, tenant_stats, name)
        worker = Worker(
            target_for=_targets(settings, dispatcher_for),
            adapter=adapter,
            stream_arn=stream_arn,
            store=store,
            dispatcher_for=dispatcher_for,
            position_for=position_for,
            window=window,
            rate=rate,
            only_shards=only_shards,
            settings=worker_settings(settings, config),
            stream=name,
            pool=pool,
        )
        runs[name] = StreamRun(name, stream, stream_arn, built_routes, stats, worker)
    fleet = Fleet({name: run.worker for name, run in runs.items()}, pool=pool)
    metrics.streams = {name: run.stats for name, run in runs.items()}
    metrics.worker = fleet
    all_routes = list({id(r): r for run in runs.values() for r in run.routes}.values())
    by_route: dict[str, list[RouteStats]] = {}
    for run in runs.values():
        for route_name, route_stats in run.stats.items():
            parts = by_route.setdefault(route_name, [])
            if all(route_stats is not part for part in parts):
                parts.append(route_stats)
    summed: dict[str, RouteStats] = {
        route_name: parts[0] if len(parts) == 1 else SummedStats(parts)
        for route_name, parts in by_route.items()
    }
    metrics.route_stats = summed
    first = next(iter(runs.values()))
    return App(
        settings=settings,
        worker=fleet,
        metrics=metrics,
        stream=first.info,
        routes=all_routes,
        stats=summed,
        clients=clients,
        http=http,
        sink=sink,
        streams=runs,
        memory_caches=caches,
    )
