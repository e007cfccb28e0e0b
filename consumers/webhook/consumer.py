"""The webhook consumer: plans a batch (per-key order, tenant fairness, concurrency) and
settles it into a BatchResult; one delivery at a time goes through :class:`Delivery`."""

from __future__ import annotations

import contextvars
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog

from consumers.webhook.body import encode_body
from consumers.webhook.delivery import Delivery, Held, Rejected
from consumers.webhook.options import WebhookOptions
from consumers.webhook.subscriptions import (
    Subscription,
    SubscriptionSource,
    TableSubscriptions,
)
from processor import BatchResult, ConsumerContext, RecordError, StreamRecord, TransientError
from processor.webhooks import CircuitBreaker, FairScheduler, TokenBuckets

__all__ = ["WebhookConsumer"]

log = structlog.get_logger()

#: "already delivered to this subscription" markers kept for records with several
MAX_PARTIAL_MARKERS = 100_000
#: receivers answering faster than this on average are called from the engine's thread: with
#: batches of 3 to a local receiver, pool threads cost ~0.1 ms more CPU per record and were
#: slower (525 vs 298 us per record), the GIL being the only thing they could overlap
INLINE_BELOW_S = 0.002


_Outcome = tuple[str, Literal["ok", "rejected", "failed", "held"], str, float | None]


_Scheduler = FairScheduler[str, tuple[StreamRecord, list[Subscription]]]


@dataclass(slots=True)
class _BatchOutcome:
    failed: set[str] = field(default_factory=set)
    rejected: dict[str, str] = field(default_factory=dict)
    retry_after: float | None = None
    reasons: dict[str, str] = field(default_factory=dict)
    held: set[str] = field(default_factory=set)


class WebhookConsumer:
    def __init__(
        self,
        options: WebhookOptions,
        context: ConsumerContext,
        subscriptions: SubscriptionSource,
    ) -> None:
        self._options = options
        self._context = context
        self._stats = context.stats
        self._table = context.stream.table_name
        self.subscriptions = subscriptions
        #: one record to one subscription: signing, egress guard, retries, breakers
        self.delivery = Delivery(options, context)
        # processor.http.HttpPool says its size; a plain PoolManager (users' tests) has 10
        pool_size = int(getattr(context.http, "maxsize", 10))
        self.concurrency = min(options.concurrency or pool_size, pool_size)
        self._buckets = (
            TokenBuckets(
                options.tenant_rate_per_s,
                options.tenant_burst,
                overrides=options.tenant_rates,
            )
            if options.tenant_rate_per_s is not None or options.tenant_rates
            else None
        )
        #: moving average of successful deliveries' duration (decides inline vs pooled)
        self._latency_s: float | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()
        # (event_id, subscription id) already delivered for records with several subscriptions;
        # bounded: past MAX_PARTIAL_MARKERS the oldest is forgotten (at worst one more POST)
        self._partial: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._partial_lock = threading.Lock()
        #: called by the engine with every batch (before routing) when the stream is the
        #: subscriptions table's own
        self.watch: Callable[[Sequence[StreamRecord]], None] | None = (
            subscriptions.watch
            if isinstance(subscriptions, TableSubscriptions) and subscriptions.table == self._table
            else None
        )

    # -- delivery (consumers.webhook.delivery) ----------------------------------------------------

    def breaker(self, url: str) -> CircuitBreaker:
        return self.delivery.breaker(url)

    def deliver(self, record: StreamRecord, subscription: Subscription, body: bytes) -> None:
        self.delivery.deliver(record, subscription, body)

    def connections_opened(self) -> int:
        return self.delivery.connections_opened()

    def state_sizes(self) -> dict[str, int]:
        """How much per-host and per-record state is held (each is bounded)."""
        return {
            "breakers": self.delivery.breakers,
            "partial_markers": len(self._partial),
            "tenant_buckets": self._buckets.tenants() if self._buckets is not None else 0,
        }

    # -- a batch ---------------------------------------------------------------------------------

    def _pool(self) -> ThreadPoolExecutor:
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self.concurrency, thread_name_prefix="dsp-webhook"
                )
            return self._executor

    def _task(
        self,
        key: str,
        record: StreamRecord,
        subscriptions: list[Subscription],
        done: queue.SimpleQueue[_Outcome],
    ) -> None:
        structlog.contextvars.bind_contextvars(
            tenant=record.tenant, sequence_number=record.sequence_number
        )
        try:
            body = encode_body(record, table_name=self._table)
            several = len(subscriptions) > 1
            for subscription in subscriptions:
                marker = (record.event_id, subscription.id)
                if several and marker in self._partial:
                    continue
                started = time.perf_counter()
                self.deliver(record, subscription, body)
                took = time.perf_counter() - started
                previous = self._latency_s
                self._latency_s = took if previous is None else previous * 0.9 + took * 0.1
                self._stats.add("posted")
                if several:
                    with self._partial_lock:
                        self._partial[marker] = None
                        if len(self._partial) > MAX_PARTIAL_MARKERS:
                            self._partial.popitem(last=False)
            self._forget_partial(record, subscriptions)
            done.put((key, "ok", "", None))
        except (Rejected, RecordError) as exc:  # never retried: dead-lettered with the reason
            self._forget_partial(record, subscriptions)  # dead-lettered: a redrive sends anew
            done.put((key, "rejected", str(exc), None))
        except Held as exc:
            done.put((key, "held", str(exc), exc.retry_after))
        except TransientError as exc:
            done.put((key, "failed", str(exc), exc.retry_after))
        except BaseException as exc:  # noqa: BLE001 - reported to the batch loop, never lost
            done.put((key, "failed", f"{type(exc).__name__}: {exc}", None))
        finally:
            structlog.contextvars.unbind_contextvars("tenant", "sequence_number")

    def _forget_partial(self, record: StreamRecord, subscriptions: list[Subscription]) -> None:
        if len(subscriptions) > 1:
            with self._partial_lock:
                for subscription in subscriptions:
                    self._partial.pop((record.event_id, subscription.id), None)

    def __call__(self, records: Sequence[StreamRecord]) -> BatchResult | None:
        scheduler: _Scheduler = FairScheduler(self._buckets)
        planned = 0
        for record in records:
            subscriptions = self.subscriptions.lookup(record.tenant, record.event_name.value)
            if not subscriptions:
                self._stats.add("no_subscription")
                continue
            scheduler.add(record.key_id, record.tenant, (record, subscriptions))
            planned += 1
        pool = None if self._deliver_inline(planned) else self._pool()
        done: queue.SimpleQueue[_Outcome] = queue.SimpleQueue()
        in_flight: dict[str, StreamRecord] = {}
        batch = _BatchOutcome()
        while True:
            nxt: Any = None
            while len(in_flight) < self.concurrency:
                nxt = scheduler.next()
                if not isinstance(nxt, tuple):
                    break
                key, (record, subscriptions) = nxt
                in_flight[key] = record
                run = contextvars.copy_context().run
                if pool is None:
                    run(self._task, key, record, subscriptions, done)
                else:
                    pool.submit(run, self._task, key, record, subscriptions, done)
            if not in_flight:
                if nxt is None or self._context.stop.is_set():
                    break
                self._stats.add("rate_limited_waits")
                self._context.stop.wait(float(nxt))  # every ready tenant is out of tokens
                continue
            try:
                outcome = done.get(timeout=nxt if isinstance(nxt, float) else None)
            except queue.Empty:
                continue
            self._settle(outcome, in_flight.pop(outcome[0]), scheduler, batch)
        # stopped while waiting for tokens: what was not started is retried later
        batch.failed.update(r.event_id for r, _ in scheduler.drain())
        if not batch.failed and not batch.rejected:
            return None
        return BatchResult(
            frozenset(batch.failed),
            batch.rejected,
            batch.retry_after,
            batch.reasons,
            held=frozenset(batch.held),
        )

    def _deliver_inline(self, planned: int) -> bool:
        """Whether to deliver this batch in the calling thread, one record at a time (in the
        same fair order): when there is nothing to overlap, or when receivers answer so fast
        that handing records to other threads costs more than it saves."""
        if planned <= 1 or self.concurrency == 1:
            return True
        latency = self._latency_s
        return latency is not None and latency < INLINE_BELOW_S

    def _settle(
        self,
        outcome: _Outcome,
        record: StreamRecord,
        scheduler: _Scheduler,
        batch: _BatchOutcome,
    ) -> None:
        key, result, detail, hint = outcome
        if result == "ok":
            scheduler.done(key)
            return
        context = {
            "route": self._context.route,
            "tenant": record.tenant,
            "event_id": record.event_id,
            "sequence_number": record.sequence_number,
        }
        if result == "rejected":
            batch.rejected[record.event_id] = detail
            self._stats.add("rejected")
            log.warning("webhook_rejected", **context, reason=detail)
            scheduler.done(key)
            return
        if hint is not None:
            batch.retry_after = max(batch.retry_after or 0.0, hint)
        rest = [r for r, _ in scheduler.drop(key)]
        batch.failed.update(r.event_id for r in rest)
        if result == "held":
            batch.held.update(r.event_id for r in rest)
        batch.reasons[record.event_id] = detail
        for later in rest:
            if later.event_id != record.event_id:
                batch.reasons[later.event_id] = (
                    f"held back behind {record.event_id} of the same key: {detail}"
                )
        log.warning("webhook_failed", **context, error=detail, held_back=len(rest) - 1)

    def close(self) -> None:
        with self._executor_lock:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None
