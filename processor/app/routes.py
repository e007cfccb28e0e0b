"""Routes from settings: each consumer built by its factory (errors name the route's key), its
filter, the retry policy, tenancy, the egress policy and the dead-letter sink."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable
from typing import Any

import structlog
import urllib3
from pydantic import ValidationError

from processor.aws import AwsClients
from processor.core.consumer import (
    ConsumerContext,
    RouteStats,
    StreamInfo,
    aws_connections,
    builtin_consumers,
    load_callable,
)
from processor.core.dead_letters import DeadLetterSink
from processor.core.handlers import RecordHandler
from processor.core.retry import RetryPolicy
from processor.core.routing import Route, compile_filters
from processor.core.tenancy import Tenancy, TenantResolver
from processor.core.waits import interruptible_sleep
from processor.errors import ConfigError
from processor.settings import RouteSettings, Settings
from processor.sinks.jsonl import JsonlDeadLetterSink
from processor.sinks.sqs import SqsDeadLetterSink
from processor.sources.dynamodb import RETENTION_S
from processor.webhooks.egress import EgressPolicy

__all__ = [
    "build_routes",
    "close_routes",
    "egress_policy",
    "make_dead_letter_sink",
    "refuse_windows",
    "retry_policy",
    "tenancy_for",
]

log = structlog.get_logger()


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
        consumer = load_callable(route.consumer)
    except ValueError as exc:
        raise ConfigError(key, route.consumer, str(exc)) from None
    if route.kind == "record" and not isinstance(consumer, RecordHandler):
        return RecordHandler(consumer)  # a function of one record (docs/consumers.md)
    return consumer


def refuse_windows(settings: Settings, where: str, instead: str) -> None:
    """Tumbling windows keep their state with dsp's own checkpoints: ConfigError elsewhere."""
    for index, route in enumerate(settings.routes):
        if route.tumbling_window_s is not None:
            raise ConfigError(
                f"routes.{index}.tumbling_window_s",
                route.tumbling_window_s,
                f"windows keep their state with dsp run's checkpoints, which {where} does not "
                f"have; {instead}",
            )


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
    stream_name: str | None = None,
) -> tuple[list[Route], dict[str, RouteStats]]:
    """Build every route's consumer and filter: the one validation path of `dsp run` and
    `dsp check-config` (``offline``: without AWS; see ConsumerContext.offline). With
    ``stream_name``, only the routes that take that stream's records (``routes.N.streams``)."""
    routes, stats = [], {}
    for index, route in enumerate(settings.routes):
        if stream_name is not None and route.streams and stream_name not in route.streams:
            continue
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
                window_s=route.tumbling_window_s,
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
    """The configured destination; raises ConfigError at once when its file (the destination,
    or SQS's overflow for letters too large for a message) cannot be written."""
    file_sink = JsonlDeadLetterSink(settings.dead_letter.path or "dead-letter.jsonl")
    file_sink.check_writable()
    if settings.dead_letter.sqs_queue_url:
        return SqsDeadLetterSink(
            clients.sqs,
            settings.dead_letter.sqs_queue_url,
            overflow=file_sink,
            max_bytes=settings.dead_letter.sqs_max_bytes,
        )
    return file_sink


def close_routes(routes: list[Route], http: urllib3.PoolManager) -> None:
    """Close every consumer that has a ``close``, then the shared HTTP pool."""
    for route in routes:
        close = getattr(route.consumer, "close", None)
        if callable(close):
            close()
    http.clear()


def consumer_connections(settings: Settings) -> int:
    """Connections the consumers' own AWS calls may hold at once: what each route's factory
    declares (declare_aws_connections), times the key groups that may call it together."""
    registry = builtin_consumers()
    per_call = 0
    for route in settings.routes:
        try:
            factory = load_callable(registry.get(route.consumer, route.consumer))
        except ValueError:
            continue  # build_routes reports it, naming the key
        per_call += aws_connections(factory, route.options)
    return per_call * settings.batch.parallelism
