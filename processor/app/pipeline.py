"""A pipeline: what every entry point hands records to. Routes (consumers and filters), the
dead-letter sink, the retry policy and tenancy, built once from the settings through
:meth:`Pipeline.from_settings`; :meth:`Pipeline.dispatcher` makes a Dispatcher over them.

`dsp run` builds one per stream (its routes have the stream's key schema), the Lambda
handler, the Java KCL's record processor, a replay of archives and a redrive one each; none
of the last four builds a worker."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import urllib3

from processor.app.routes import (
    build_routes,
    close_routes,
    make_dead_letter_sink,
    retry_policy,
    tenancy_for,
)
from processor.aws import AwsClients
from processor.core.consumer import RouteStats, StreamInfo
from processor.core.dead_letters import DeadLetterSink
from processor.core.dispatch import Dispatcher
from processor.core.retry import RetryPolicy
from processor.core.routing import Route
from processor.core.tenancy import Tenancy, TenantStats
from processor.http import make_http_pool
from processor.settings import Settings

__all__ = ["Pipeline"]


@dataclass(slots=True)
class Pipeline:
    """Routes and everything a Dispatcher needs beside them."""

    routes: list[Route]
    stats: dict[str, RouteStats]
    sink: DeadLetterSink
    policy: RetryPolicy
    tenancy: Tenancy
    http: urllib3.PoolManager
    memory_caches: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        clients: AwsClients,
        stream: StreamInfo,
        stop: threading.Event,
        stream_name: str | None = None,
        routes: tuple[list[Route], dict[str, RouteStats]] | None = None,
        sink: DeadLetterSink | None = None,
        http: urllib3.PoolManager | None = None,
        memory_caches: dict[str, Any] | None = None,
        retention_s: float | None = None,
        one_attempt: bool = False,
    ) -> Pipeline:
        """Build the pipeline ``settings`` describe for ``stream``. The dead-letter sink is
        made (and its file checked writable) before any consumer, so a bad path fails at
        once; ``sink``, ``http`` and ``memory_caches`` are shared when given (several
        streams in one process). ``one_attempt``: the caller retries (Lambda's event source
        mapping), so one attempt per call, no bisection, and exhausted records reported."""
        sink = sink if sink is not None else make_dead_letter_sink(settings, clients)
        http = http if http is not None else make_http_pool(settings)
        caches = memory_caches if memory_caches is not None else {}
        if routes is None:
            routes = build_routes(
                settings,
                stream=stream,
                clients=clients,
                http=http,
                memory_caches=caches,
                stop=stop,
                stream_name=stream_name,
            )
        policy = (
            retry_policy(settings)
            if retention_s is None
            else retry_policy(settings, retention_s=retention_s)
        )
        if one_attempt:
            policy = replace(policy, max_retries=0, bisect_on_error=False, report_exhausted=True)
        return cls(routes[0], routes[1], sink, policy, tenancy_for(settings), http, caches)

    def dispatcher(
        self,
        stop: threading.Event,
        *,
        observe: Callable[[str, float], None] | None = None,
        tenant_stats: TenantStats | None = None,
    ) -> Dispatcher:
        """A Dispatcher over these routes (one per reader: each with its stop event)."""
        return Dispatcher(
            self.routes,
            self.sink,
            self.policy,
            stats=self.stats,
            stop=stop,
            observe=observe,
            tenancy=self.tenancy,
            tenant_stats=tenant_stats,
        )

    def close(self) -> None:
        close_routes(self.routes, self.http)
