"""The composition root: settings in, a ready-to-run worker out.

Only this module (and the CLI above it) wires concrete adapters together; everything below
takes its collaborators as arguments.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
import urllib3
from pydantic import ValidationError

from processor.aws import AwsClients, clients_for
from processor.core._rate import RateLimiter
from processor.core._waiting import interruptible_sleep
from processor.core.consumer import (
    ConsumerContext,
    RouteStats,
    StreamInfo,
    builtin_consumers,
    load_callable,
)
from processor.core.dispatch import Dispatcher
from processor.core.egress import EgressPolicy
from processor.core.retry import RetryPolicy
from processor.core.routing import Route, compile_filters
from processor.core.tenancy import Tenancy, TenantResolver, TenantStats
from processor.errors import ConfigError
from processor.http import make_http_pool
from processor.leases.dynamodb import DynamoDBLeaseStore
from processor.leases.model import Lease, LeaseStore
from processor.leases.worker import PositionFor, Worker, WorkerSettings
from processor.multilang.shard import MultiLangProcessor
from processor.ops.metrics import Metrics
from processor.settings import RouteSettings, Settings
from processor.sinks.dead_letter import DeadLetterSink, JsonlDeadLetterSink, SqsDeadLetterSink
from processor.sources.dynamodb import RETENTION_S, StreamsAdapter, resolve_stream
from processor.sources.reader import ReaderSettings, RecordWindow

__all__ = ["App", "build_app", "build_routes", "make_http_pool", "tenancy_for"]

log = structlog.get_logger()

#: Reader threads per process share one boto3 client; botocore's pool must cover them all
#: plus the main loop and the consumers' own calls.
_EXTRA_CONNECTIONS = 8


def _build_consumer(
    index: int, route: RouteSettings, context: ConsumerContext
) -> Callable[..., Any]:
    key = f"routes.{index}.consumer"
    registry = builtin_consumers()
    if route.consumer in registry:
        factory = load_callable(registry[route.consumer])
        try:
            return factory(route.options, context)  # type: ignore[no-any-return]
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            loc = ".".join(str(p) for p in err["loc"])
            value = route.options
            for part in err["loc"]:
                value = value.get(str(part)) if isinstance(value, dict) else None  # type: ignore[assignment]
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "missing":
                msg = "required option is missing"
            elif err["type"] == "extra_forbidden":
                msg = "unknown option; check its spelling"
            raise ConfigError(f"routes.{index}.options.{loc}", value, msg) from None
    try:
        return load_callable(route.consumer)
    except ValueError as exc:
        raise ConfigError(key, route.consumer, str(exc)) from None


def egress_policy(settings: Settings) -> EgressPolicy:
    """Where tenant-supplied webhook URLs may go, from ``[http]``."""
    return EgressPolicy(
        allowed_networks=tuple(ipaddress.ip_network(n) for n in settings.http.allowed_networks),
        https_only=settings.http.tenant_https_only,
        guard_operator_urls=settings.http.guard_operator_urls,
    )


def build_routes(
    settings: Settings,
    *,
    stream: StreamInfo,
    clients: Any,
    http: Any,
    memory_caches: dict[str, Any],
    stop: threading.Event,
    sleep: Callable[[float], None] | None = None,
    offline: bool = False,
) -> tuple[list[Route], dict[str, RouteStats]]:
    """Build every route's consumer and filter: the one validation path of `dsp run` and
    `dsp check-config` (``offline``: without AWS; see ConsumerContext.offline)."""
    routes, stats = [], {}
    for index, route in enumerate(settings.routes):
        context = ConsumerContext(
            route=route.name,
            config_key=f"routes.{index}",
            stream=stream,
            clients=clients,
            http=http,
            memory_caches=memory_caches,
            sleep=sleep if sleep is not None else interruptible_sleep(stop),
            stop=stop,
            egress=egress_policy(settings),
            offline=offline,
        )
        consumer = _build_consumer(index, route, context)
        watch = getattr(consumer, "watch", None)
        routes.append(
            Route(
                route.name,
                consumer,
                compile_filters(route.filters, extensions=route.filter_extensions),
                watch=watch if callable(watch) else None,
            )
        )
        stats[route.name] = context.stats
    return routes, stats


def tenancy_for(settings: Settings) -> Tenancy:
    return Tenancy(
        TenantResolver.from_settings(settings.tenancy.attribute, settings.tenancy.pattern),
        settings.tenancy.missing,
    )


def retry_policy(
    settings: Settings, *, report_exhausted: bool = False, retention_s: float = RETENTION_S
) -> RetryPolicy:
    """The routes' retry budget; ``retention_s`` is the source's (DynamoDB Streams: 24 h)."""
    return RetryPolicy(
        max_retries=settings.batch.max_retries,
        bisect_on_error=settings.batch.bisect_on_error,
        base_delay_s=settings.batch.retry_base_delay_s,
        max_delay_s=settings.batch.retry_max_delay_s,
        max_record_age_s=settings.batch.max_record_age_s,
        parallelism=settings.batch.parallelism,
        report_exhausted=report_exhausted,
        retention_s=retention_s,
    )


def make_dead_letter_sink(settings: Settings, clients: AwsClients) -> DeadLetterSink:
    file_sink = JsonlDeadLetterSink(settings.dead_letter.path or "dead-letter.jsonl")
    if settings.dead_letter.sqs_queue_url:
        return SqsDeadLetterSink(
            clients.sqs,
            settings.dead_letter.sqs_queue_url,
            overflow=file_sink,
            max_bytes=settings.dead_letter.sqs_max_bytes,
        )
    return file_sink


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
    memory_caches: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        close_routes(self.routes, self.http)


def close_routes(routes: list[Route], http: urllib3.PoolManager) -> None:
    """Close every consumer that has a ``close``, then the shared HTTP pool."""
    for route in routes:
        close = getattr(route.consumer, "close", None)
        if callable(close):
            close()
    http.clear()


def _consumer_connections(settings: Settings) -> int:
    """Connections the consumers' own DynamoDB calls may hold at once (batch_write concurrency
    per route, times the key groups that may call it together)."""
    per_call = sum(
        int(route.options.get("concurrency", 4))
        for route in settings.routes
        if route.consumer == "batch_write"
    )
    return per_call * settings.batch.parallelism


def _clients(settings: Settings) -> AwsClients:
    pool = settings.checkpoints.max_leases + _EXTRA_CONNECTIONS + _consumer_connections(settings)
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
        stream_arn = resolve_stream(clients, table=settings.stream.table, arn=settings.stream.arn)
        stream = StreamsAdapter(clients.streams).describe(stream_arn).info
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
    stream_arn = resolve_stream(clients, table=settings.stream.table, arn=settings.stream.arn)
    adapter = StreamsAdapter(
        clients.streams, describe_rate_per_s=settings.stream.describe_rate_per_s
    )
    stream = adapter.describe(stream_arn).info
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
    sink = make_dead_letter_sink(settings, clients)
    policy = retry_policy(settings, retention_s=adapter.retention_s)
    if store is None:
        store = DynamoDBLeaseStore(
            clients.dynamodb,
            table=settings.checkpoints.table,
            application=settings.checkpoints.application,
            stream_arn=stream_arn,
        )

    tenant_stats = TenantStats(settings.observability.max_tenant_labels)
    metrics = Metrics(stats, http=http, tenants=tenant_stats)
    tenancy = tenancy_for(settings)

    def dispatcher_for(stop: threading.Event) -> Dispatcher:
        return Dispatcher(
            built_routes,
            sink,
            policy,
            stats=stats,
            stop=stop,
            observe=metrics.observe_call,
            tenancy=tenancy,
            tenant_stats=tenant_stats,
        )

    processor_for = None
    if settings.multilang is not None:  # each lease drives a KCL MultiLang child
        options = settings.multilang

        def processor_for(lease: Lease, stop: threading.Event) -> MultiLangProcessor:
            return MultiLangProcessor(options, malformed=dispatcher_for(stop))

    worker = Worker(
        processor_for=processor_for,
        adapter=adapter,
        stream_arn=stream_arn,
        store=store,
        dispatcher_for=dispatcher_for,
        position_for=position_for,
        window=window,
        rate=rate,
        only_shards=only_shards,
        settings=WorkerSettings(
            owner=settings.checkpoints.owner_id,
            starting_position=settings.stream.starting_position,
            lease_timeout_s=settings.checkpoints.lease_timeout_s,
            renew_interval_s=settings.checkpoints.renew_interval_s,
            lease_scan_interval_s=settings.checkpoints.lease_scan_interval_s,
            discovery_interval_s=settings.stream.discovery_interval_s,
            max_leases=settings.checkpoints.max_leases,
            shutdown_deadline_s=settings.shutdown.deadline_s,
            reader_restart_base_s=settings.stream.reader_restart_base_s,
            reader_restart_max_s=settings.stream.reader_restart_max_s,
            reader=ReaderSettings(
                get_records_limit=settings.stream.get_records_limit,
                max_records=settings.batch.max_records,
                max_window_s=settings.batch.max_window_ms / 1000,
                on_trimmed=settings.stream.on_trimmed,
                poll_interval_min_s=settings.stream.poll_interval_min_s,
                poll_interval_max_s=settings.stream.poll_interval_max_s,
            ),
        ),
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
        memory_caches=caches,
    )


_ENGINE_COUNTERS = ("delivered", "filtered", "dead_lettered", "retries")
_HIDDEN = frozenset({"calls", "bisections", *_ENGINE_COUNTERS})


def stats_table(settings: Settings, stats: Mapping[str, RouteStats]) -> str:
    """A plain-text table of what each route did (the demo and `dsp run --stop-when-idle`)."""
    header = ["route", "consumer", *(c.replace("_", "-") for c in _ENGINE_COUNTERS), "consumer did"]
    lines = [header]
    for route in settings.routes:
        snap = stats[route.name].snapshot()
        did = ", ".join(
            f"{k.replace('_', ' ')}: {v}" for k, v in sorted(snap.items()) if k not in _HIDDEN
        )
        lines.append(
            [
                route.name,
                route.consumer,
                *(str(snap.get(c, 0)) for c in _ENGINE_COUNTERS),
                did or "-",
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    ]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)
