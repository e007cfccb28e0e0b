"""The composition root: settings in, a ready-to-run worker out.

Only this module (and the CLI above it) wires concrete adapters together; everything below
takes its collaborators as arguments.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
import urllib3

from processor.app.routes import (
    _consumer_connections,
    build_routes,
    close_routes,
    make_dead_letter_sink,
    retry_policy,
    tenancy_for,
)
from processor.aws import AwsClients, clients_for
from processor.core._rate import RateLimiter
from processor.core.consumer import (
    RouteStats,
    StreamInfo,
)
from processor.core.dispatch import Dispatcher
from processor.core.retry import RetryPolicy
from processor.core.routing import Route
from processor.core.tenancy import TenantStats
from processor.errors import ConfigError
from processor.http import make_http_pool
from processor.leases.dynamodb import DynamoDBLeaseStore
from processor.leases.model import Lease, LeaseStore
from processor.leases.worker import RENEWAL_THREADS, PositionFor, Worker, WorkerSettings
from processor.multilang.shard import MultiLangProcessor
from processor.ops.metrics import Metrics
from processor.settings import Settings
from processor.settings.sections import parse_timestamp
from processor.sinks.dead_letter import DeadLetterSink
from processor.sources.base import StreamSource
from processor.sources.dynamodb import StreamsAdapter, resolve_stream
from processor.sources.kinesis.adapter import READS_PER_SECOND as KINESIS_READS_PER_SECOND
from processor.sources.kinesis.adapter import KinesisSource, resolve_kinesis_stream
from processor.sources.processors import ShardProcessor
from processor.sources.reader import ReaderSettings, RecordWindow
from processor.tables import DynamoDBTable

__all__ = ["OFFLINE_UNCHECKED", "App", "build_app", "check_config", "stream_arn_for"]

log = structlog.get_logger()


#: Reader and renewal threads share one boto3 client; botocore's pool must cover them all
#: plus the main loop and the consumers' own calls.
_EXTRA_CONNECTIONS = 8


@dataclass(slots=True)
class App:
    """Everything a run needs, built and validated."""

    settings: Settings
    worker: Worker
    metrics: Metrics
    stream: StreamInfo
    routes: list[Route]
    stats: dict[str, RouteStats]
    clients: AwsClients
    http: urllib3.PoolManager
    #: the dead-letter destination, checked writable at build (one per process)
    sink: DeadLetterSink
    memory_caches: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        close_routes(self.routes, self.http)


def _clients(settings: Settings) -> AwsClients:
    cap = settings.checkpoints.max_leases
    readers = (
        settings.stream.reader_threads if cap is None else min(cap, settings.stream.reader_threads)
    )
    renewals = RENEWAL_THREADS if cap is None else min(cap, RENEWAL_THREADS)
    pool = readers + renewals + _EXTRA_CONNECTIONS + _consumer_connections(settings)
    return clients_for(settings.aws, pool_size=min(pool, 200))


#: what `dsp check-config --offline` cannot know without AWS
OFFLINE_UNCHECKED = (
    "the stream (stream.table / stream.arn), its view type and key schema (cache key "
    "fields, batch_write's images), batch_write target tables, subscriptions tables"
)


def check_config(settings: Settings, *, offline: bool = False) -> str:
    """Validate ``settings`` the way `dsp run` does before it reads anything: resolve the
    stream, then build every route (consumers, options, filters) through
    :func:`build_routes`, and close them. Raises ConfigError (or the AWS error) as a run
    would. Returns a one-line summary."""
    stop = threading.Event()
    http = make_http_pool(settings)
    clients: AwsClients | None = None
    if offline:
        arn = settings.stream.arn or f"arn:aws:dynamodb:::table/{settings.stream.table}/stream/-"
        stream = StreamInfo(arn, settings.stream.table or "?", "NEW_AND_OLD_IMAGES", ())
    else:
        clients = _clients(settings)
        _, _, stream = _source(settings, clients)
    routes, _ = build_routes(
        settings,
        stream=stream,
        clients=clients,
        http=http,
        memory_caches={},
        stop=stop,
        offline=offline,
    )
    stop.set()
    close_routes(routes, http)
    if offline:
        return f"ok ({len(routes)} routes; not checked offline: {OFFLINE_UNCHECKED})"
    return (
        f"ok ({len(routes)} routes; stream of table {stream.table_name} resolved: "
        f"{stream.view_type}, key {', '.join(stream.key_attributes)})"
    )


def stream_source(settings: Settings, clients: AwsClients) -> tuple[StreamSource, str]:
    """The stream the settings read, resolved as `dsp run` resolves it: adapter and ARN."""
    adapter, arn, _ = _source(settings, clients)
    return adapter, arn


def stream_arn_for(settings: Settings, clients: AwsClients) -> str:
    """The ARN of the stream the settings read (resolved as `dsp run` resolves it)."""
    return _source(settings, clients)[1]


def _source(settings: Settings, clients: AwsClients) -> tuple[StreamSource, str, StreamInfo]:
    """The stream to read (the table's latest, or the configured ARN), its adapter and what it
    carries (table, view type, key schema)."""
    if settings.stream.source == "kinesis":
        return _kinesis_source(settings, clients)
    stream_arn = resolve_stream(clients, table=settings.stream.table, arn=settings.stream.arn)
    adapter = StreamsAdapter(
        clients.streams, describe_rate_per_s=settings.stream.describe_rate_per_s
    )
    return adapter, stream_arn, adapter.describe(stream_arn).info


def _kinesis_source(
    settings: Settings, clients: AwsClients
) -> tuple[StreamSource, str, StreamInfo]:
    """A table's Kinesis Data Streams destination. KDS records carry both images; the key
    schema comes from the table (``stream.table``) when it is named."""
    stream = settings.stream
    assert stream.kinesis_stream is not None  # the settings say so
    arn = resolve_kinesis_stream(clients, stream.kinesis_stream)
    keys: tuple[str, ...] = ()
    if stream.table:
        found = DynamoDBTable(clients.dynamodb, stream.table).key_attributes()
        if found is None:
            where = clients.endpoint_url or f"region {clients.region}"
            raise ConfigError(
                "stream.table", stream.table, f"no such table at {where}; check the name"
            )
        keys = found
    info = StreamInfo(arn, stream.table or "", "NEW_AND_OLD_IMAGES", keys)
    source = KinesisSource(clients.kinesis, info=info)
    return source, arn, source.describe(arn).info


def worker_settings(settings: Settings) -> WorkerSettings:
    """The worker's and its readers' knobs, from [stream], [checkpoints], [batch], [shutdown]."""
    return WorkerSettings(
        owner=settings.checkpoints.owner_id,
        starting_position=settings.stream.starting_position,
        starting_timestamp=(
            parse_timestamp(str(settings.stream.starting_timestamp))
            if settings.stream.starting_timestamp is not None
            else None
        ),
        native_at_timestamp=settings.stream.source == "kinesis",
        timestamp_granularity_s=settings.stream.timestamp_granularity_s,
        lease_timeout_s=settings.checkpoints.lease_timeout_s,
        renew_interval_s=settings.checkpoints.renew_interval_s,
        lease_scan_interval_s=settings.checkpoints.lease_scan_interval_s,
        discovery_interval_s=settings.stream.discovery_interval_s,
        max_leases=settings.checkpoints.max_leases,
        cleanup_interval_s=(
            settings.checkpoints.cleanup_interval_s if settings.checkpoints.cleanup else None
        ),
        shutdown_deadline_s=settings.shutdown.deadline_s,
        reader_restart_base_s=settings.stream.reader_restart_base_s,
        reader_restart_max_s=settings.stream.reader_restart_max_s,
        reader_threads=settings.stream.reader_threads,
        reader=ReaderSettings(
            get_records_limit=settings.stream.get_records_limit,
            max_records=settings.batch.max_records,
            max_window_s=settings.batch.max_window_ms / 1000,
            on_trimmed=settings.stream.on_trimmed,
            poll_interval_min_s=settings.stream.poll_interval_min_s,
            poll_interval_max_s=settings.stream.poll_interval_max_s,
            idle_poll_interval_s=settings.stream.idle_poll_interval_s,
            idle_after_s=settings.stream.idle_after_s,
            reorder_window_s=settings.stream.reorder_window_ms / 1000,
            min_read_interval_s=(
                1 / KINESIS_READS_PER_SECOND if settings.stream.source == "kinesis" else 0.0
            ),
        ),
    )


def _dispatchers(
    settings: Settings,
    *,
    routes: list[Route],
    stats: dict[str, RouteStats],
    sink: DeadLetterSink,
    policy: RetryPolicy,
    metrics: Metrics,
    tenant_stats: TenantStats,
) -> Callable[[threading.Event], Dispatcher]:
    """A Dispatcher per reader (each with its reader's stop event), sharing routes and stats."""
    tenancy = tenancy_for(settings)

    def dispatcher_for(stop: threading.Event) -> Dispatcher:
        return Dispatcher(
            routes,
            sink,
            policy,
            stats=stats,
            stop=stop,
            observe=metrics.observe_call,
            tenancy=tenancy,
            tenant_stats=tenant_stats,
        )

    return dispatcher_for


def _processors(
    settings: Settings, dispatcher_for: Callable[[threading.Event], Dispatcher]
) -> Callable[[Lease, threading.Event], ShardProcessor] | None:
    """With [multilang], each lease drives a KCL MultiLang child (malformed records still go
    to the dead-letter sink); without, the worker's default: our routes."""
    options = settings.multilang
    if options is None:
        return None

    def processor_for(lease: Lease, stop: threading.Event) -> ShardProcessor:
        return MultiLangProcessor(options, malformed=dispatcher_for(stop))

    return processor_for


def build_app(
    settings: Settings,
    *,
    memory_caches: dict[str, Any] | None = None,
    consumer_stop: threading.Event | None = None,
    routes: tuple[list[Route], dict[str, RouteStats]] | None = None,
    store: LeaseStore | None = None,
    position_for: PositionFor | None = None,
    window: RecordWindow | None = None,
    rate: RateLimiter | None = None,
    only_shards: frozenset[str] | None = None,
) -> App:
    """Resolve the stream, build clients, routes and the worker. Raises ConfigError."""
    clients = _clients(settings)
    sink = make_dead_letter_sink(settings, clients)  # before any call: a bad path fails at once
    adapter, stream_arn, stream = _source(settings, clients)
    http = make_http_pool(settings)
    caches: dict[str, Any] = memory_caches if memory_caches is not None else {}
    stop_consumers = consumer_stop or threading.Event()
    if routes is None:
        routes = build_routes(
            settings,
            stream=stream,
            clients=clients,
            http=http,
            memory_caches=caches,
            stop=stop_consumers,
        )
    built_routes, stats = routes
    if store is None:
        store = DynamoDBLeaseStore(
            clients.dynamodb,
            table=settings.checkpoints.table,
            application=settings.checkpoints.application,
            stream_arn=stream_arn,
        )
    tenant_stats = TenantStats(settings.observability.max_tenant_labels)
    metrics = Metrics(stats, http=http, tenants=tenant_stats)
    dispatcher_for = _dispatchers(
        settings,
        routes=built_routes,
        stats=stats,
        sink=sink,
        policy=retry_policy(settings, retention_s=adapter.retention_s),
        metrics=metrics,
        tenant_stats=tenant_stats,
    )
    worker = Worker(
        processor_for=_processors(settings, dispatcher_for),
        adapter=adapter,
        stream_arn=stream_arn,
        store=store,
        dispatcher_for=dispatcher_for,
        position_for=position_for,
        window=window,
        rate=rate,
        only_shards=only_shards,
        settings=worker_settings(settings),
    )
    metrics.worker = worker
    return App(
        settings=settings,
        worker=worker,
        metrics=metrics,
        stream=stream,
        routes=built_routes,
        stats=stats,
        clients=clients,
        http=http,
        sink=sink,
        memory_caches=caches,
    )
