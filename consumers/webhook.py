"""POST one JSON document per record and subscription, through the process's shared HTTP pool.

Body: ``event_id``, ``event_name``, ``table_name``, ``tenant``, ``keys``, ``new_image``,
``old_image``, ``sequence_number``, ``approximate_creation_time`` (ISO 8601 UTC), with plain
JSON values (numbers exact, sets as sorted lists, binary as base64). Headers:
``Idempotency-Key`` (the record's ``event_id``, the same on every attempt) and, with a secret,
``X-DSP-Timestamp`` and ``X-DSP-Signature`` (see :mod:`processor.core.signatures`).

Who receives what: ``options.url`` (every record; ``{tenant}`` is filled in), or
``options.subscriptions`` (a list in the configuration), or ``options.subscriptions_table``
(a DynamoDB table, cached for ``subscriptions_ttl_s``). See :mod:`consumers.subscriptions`.

Delivery:

* records of different item keys go out concurrently (up to ``concurrency``, at most the
  pool's size), records of one key one at a time and in stream order; receivers that answer
  within 2 ms on average are called from the engine's thread instead (nothing to overlap);
* tenants take turns (round-robin), each within its own token bucket
  (``tenant_rate_per_s``, ``tenant_burst``, ``tenant_rates``), so a noisy tenant neither
  starves the others of connections nor floods its receiver;
* 5xx, 408, 429 (honouring ``Retry-After`` seconds or HTTP date), connection errors and
  timeouts are retried with exponential backoff and full jitter, bounded by
  ``max_attempts`` and ``deadline_s``; any other 4xx is final for that record (dead-lettered,
  delivery goes on);
* a per-host circuit breaker opens after ``breaker_threshold`` consecutive failures and lets
  one probe through after ``breaker_cool_down_s``. Meanwhile ``on_unavailable = "wait"``
  holds that host's records: they are reported failed (with the later records of their key)
  with ``retry_after`` = the next probe and marked ``held``: the engine tries them again
  then, spending no retry (ADR 0015), until the outage ends or ``max_record_age_s`` (the
  stream's retention) is reached, so order is kept and nothing is lost; ``"dead_letter"``
  dead-letters them with the reason at once, so the shard moves on.

A record whose retries are exhausted is reported failed together with the later records of
its key; the engine retries them per ``[batch]``.
"""

from __future__ import annotations

import contextvars
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
import structlog
import urllib3
from pydantic import Field, SecretStr, field_validator, model_validator
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    stop_when_event_set,
)

from consumers._options import Options
from consumers.subscriptions import (
    ANY_TENANT,
    MissingTenant,
    StaticSubscriptions,
    Subscription,
    SubscriptionSource,
    TableSubscriptions,
)
from processor import (
    BatchResult,
    CircuitBreaker,
    CircuitOpen,
    ConfigError,
    ConsumerContext,
    DestinationNotAllowed,
    EgressPolicy,
    FairScheduler,
    RecordError,
    StreamRecord,
    TokenBuckets,
    TransientError,
    WaitRetryAfter,
    check_url_template,
    host_is_templated,
    parse_retry_after,
    pinned_request,
    plain_image,
    redact_text,
    redact_url,
    secret_key,
    signature_headers,
    standard_headers,
)

__all__ = ["WebhookConsumer", "build", "encode_body"]

log = structlog.get_logger()

RETRY_STATUS_CODES = frozenset({408, 429, 500, 502, 503, 504})
#: per-host circuit breakers kept (tenants choose hosts); least recently used closed first out
MAX_BREAKERS = 1_000
#: "already delivered to this subscription" markers kept for records with several
MAX_PARTIAL_MARKERS = 100_000
#: receivers answering faster than this on average are called from the engine's thread: with
#: batches of 3 to a local receiver, pool threads cost ~0.1 ms more CPU per record and were
#: slower (525 vs 298 us per record), the GIL being the only thing they could overlap
INLINE_BELOW_S = 0.002
_encoder = msgspec.json.Encoder(decimal_format="number")


class SubscriptionOptions(Options):
    tenant: str = ANY_TENANT
    url: str
    secret: SecretStr | None = Field(default=None, repr=False)
    secrets: list[SecretStr] = Field(default_factory=list, repr=False)
    events: list[Literal["INSERT", "MODIFY", "REMOVE"]] = Field(default_factory=list)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_url(value)


_check_url = check_url_template


def _all_secrets(secret: SecretStr | None, secrets: list[SecretStr]) -> tuple[str, ...]:
    """The secrets' values, ``secret`` first (held as SecretStr everywhere else)."""
    return tuple(s.get_secret_value() for s in ([secret] if secret else []) + secrets)


class WebhookOptions(Options):
    url: str | None = None
    secret: SecretStr | None = Field(default=None, repr=False)
    #: several secrets during a rotation: every delivery is signed with each
    secrets: list[SecretStr] = Field(default_factory=list, repr=False)
    #: "standard-webhooks" (webhook-id/-timestamp/-signature) or the legacy "x-dsp" headers
    signature: Literal["standard-webhooks", "x-dsp"] = "standard-webhooks"
    subscriptions: list[SubscriptionOptions] | None = None
    subscriptions_table: str | None = Field(default=None, min_length=3, max_length=255)
    subscriptions_ttl_s: float = Field(default=300.0, ge=0)
    #: a larger subscriptions table is refused (the cache keeps what it had, and says so)
    max_subscriptions: int = Field(default=100_000, ge=1)
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    max_attempts: int = Field(default=5, ge=1, le=100)
    deadline_s: float = Field(default=120.0, gt=0)
    base_delay_s: float = Field(default=0.2, gt=0)
    max_delay_s: float = Field(default=30.0, gt=0)
    headers: dict[str, str] = Field(default_factory=dict, repr=False)  # Authorization...
    concurrency: int | None = Field(default=None, ge=1, le=256)
    tenant_rate_per_s: float | None = Field(default=None, gt=0)
    tenant_burst: float = Field(default=10.0, ge=1)
    tenant_rates: dict[str, float] = Field(default_factory=dict)
    breaker_threshold: int = Field(default=5, ge=1)
    breaker_cool_down_s: float = Field(default=30.0, gt=0)
    on_unavailable: Literal["wait", "dead_letter"] = "wait"

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_url(value)

    @model_validator(mode="after")
    def _one_source(self) -> WebhookOptions:
        given = [
            name
            for name in ("url", "subscriptions", "subscriptions_table")
            if getattr(self, name) is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "set exactly one of url, subscriptions, subscriptions_table"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.signature == "standard-webhooks":
            named = [
                ("secret", self.secret),
                *((f"secrets.{i}", x) for i, x in enumerate(self.secrets)),
            ]
            for s in self.subscriptions or []:
                named += [("subscriptions: secret", s.secret)]
                named += [("subscriptions: secrets", x) for x in s.secrets]
            for name, secret in named:
                if secret is not None:
                    try:
                        secret_key(secret.get_secret_value())
                    except ValueError as exc:
                        raise ValueError(f"{name}: {exc}") from None
        return self


def encode_body(record: StreamRecord, *, table_name: str) -> bytes:
    """The exact bytes POSTed for ``record``."""
    created = record.approximate_creation_time
    return _encoder.encode(
        {
            "event_id": record.event_id,
            "event_name": record.event_name.value,
            "table_name": record.table_name or table_name,
            "tenant": record.tenant,
            "keys": plain_image(record.wire_keys),
            "new_image": plain_image(record.wire_new_image),
            "old_image": plain_image(record.wire_old_image),
            "sequence_number": record.sequence_number,
            "approximate_creation_time": created.isoformat().replace("+00:00", "Z")
            if created
            else None,
        }
    )


class _Rejected(Exception):
    pass


_Outcome = tuple[str, Literal["ok", "rejected", "failed", "held"], str, float | None]


class _Held(TransientError):
    """Not attempted: the destination's breaker is open (``on_unavailable = "wait"``)."""


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
        self._wait_retry_after = WaitRetryAfter(options.base_delay_s, options.max_delay_s)
        self._http: urllib3.PoolManager = context.http
        self._stats = context.stats
        self._table = context.stream.table_name
        self.subscriptions = subscriptions
        self._egress: EgressPolicy = context.egress or EgressPolicy()
        # processor.http.HttpPool says its size; a plain PoolManager (users' tests) has 10
        pool_size = int(getattr(self._http, "maxsize", 10))
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
        self._breakers: OrderedDict[str, CircuitBreaker] = OrderedDict()
        self._breakers_lock = threading.Lock()
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

    # -- one HTTP attempt -----------------------------------------------------------------------

    def breaker(self, url: str) -> CircuitBreaker:
        parsed = urllib3.util.parse_url(url)
        host = f"{parsed.host}:{parsed.port or (443 if parsed.scheme == 'https' else 80)}"
        with self._breakers_lock:
            breaker = self._breakers.get(host)
            if breaker is not None:
                self._breakers.move_to_end(host)
                return breaker
            breaker = self._breakers[host] = CircuitBreaker(
                host,
                threshold=self._options.breaker_threshold,
                cool_down_s=self._options.breaker_cool_down_s,
                clock=self._context.clock,
                on_change=self._breaker_changed,
            )
            if len(self._breakers) > MAX_BREAKERS:  # forget the least recently used closed one
                idle = next((h for h, b in self._breakers.items() if b.state == "closed"), None)
                del self._breakers[idle if idle is not None else next(iter(self._breakers))]
            return breaker

    def state_sizes(self) -> dict[str, int]:
        """How much per-host and per-record state is held (each is bounded)."""
        return {
            "breakers": len(self._breakers),
            "partial_markers": len(self._partial),
            "tenant_buckets": self._buckets.tenants() if self._buckets is not None else 0,
        }

    def _breaker_changed(self, host: str, state: str) -> None:
        self._stats.add(f"circuit_{'opened' if state == 'open' else 'closed'}")
        log.warning("webhook_circuit_" + state, route=self._context.route, host=host)

    def _post(
        self,
        url: str,
        body: bytes,
        headers: dict[str, str],
        subscription: Subscription,
        breaker: CircuitBreaker,
    ) -> None:
        # an untrusted URL is resolved and checked on every attempt, before any connection
        pinned = self._egress.pin(url) if subscription.guarded else None
        breaker.before_call()
        self._stats.add("attempts")
        if subscription.secrets:  # signed afresh on every attempt (a new timestamp)
            if self._options.signature == "x-dsp":
                headers = {**headers, **signature_headers(subscription.secrets[0], body)}
            else:
                message_id = headers["Idempotency-Key"]
                headers = {**headers, **standard_headers(message_id, subscription.secrets, body)}
        try:
            if pinned is not None:
                response = pinned_request(
                    self._http, pinned, body=body, headers=headers, timeout=self._options.timeout_s
                )
            else:
                response = self._http.request(
                    "POST",
                    url,
                    body=body,
                    headers=headers,
                    timeout=self._options.timeout_s,
                    retries=False,
                    redirect=False,
                )
        except urllib3.exceptions.HTTPError as exc:
            breaker.failure()
            shown = redact_url(url)
            raise TransientError(
                f"POST {shown}: {redact_text(str(exc))}", consumer=self._context.route
            ) from exc
        status = response.status
        if status in RETRY_STATUS_CODES:
            breaker.failure()
            raise TransientError(
                f"POST {redact_url(url)}: HTTP {status}: {response.data[:200]!r}",
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
                consumer=self._context.route,
            )
        breaker.success()
        if not 200 <= status < 300:
            raise _Rejected(f"POST {redact_url(url)}: HTTP {status}: {response.data[:200]!r}")

    def _log_retry(self, record: StreamRecord, url: str, state: RetryCallState) -> None:
        self._stats.add("retries")
        log.warning(
            "webhook_retrying",
            route=self._context.route,
            tenant=record.tenant,
            event_id=record.event_id,
            sequence_number=record.sequence_number,
            url=redact_url(url),
            attempt=state.attempt_number,
            wait_s=round(state.upcoming_sleep, 3),
            error=str(state.outcome.exception()) if state.outcome else None,
        )

    # -- one record to one subscription ---------------------------------------------------------

    def deliver(self, record: StreamRecord, subscription: Subscription, body: bytes) -> None:
        """POST ``body`` to the subscription. Raises _Rejected or TransientError."""
        try:
            url = subscription.url_for(record.tenant)
        except MissingTenant as exc:
            raise _Rejected(str(exc)) from None
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": record.event_id,
            **self._options.headers,
        }
        if self._options.signature == "standard-webhooks" and not _secrets_usable(subscription):
            raise _Rejected(
                "the subscription's secret is not a Standard Webhooks key (whsec_<base64>)"
            )
        breaker = self.breaker(url)
        options = self._options

        def attempts() -> None:
            retrying = Retrying(
                stop=stop_after_attempt(options.max_attempts)
                | stop_after_delay(options.deadline_s)
                | stop_when_event_set(self._context.stop),
                wait=self._wait_retry_after,
                retry=retry_if_exception_type(TransientError),
                sleep=self._context.sleep,
                before_sleep=lambda state: self._log_retry(record, url, state),
                reraise=True,
            )
            try:
                retrying(self._post, url, body, headers, subscription, breaker)
            except DestinationNotAllowed as exc:
                self._stats.add("destination_refused")
                raise _Rejected(str(exc)) from None
            except TransientError as exc:
                if breaker.state == "closed":  # the cause, for the dead letter if it comes to it
                    attempts_made = retrying.statistics.get("attempt_number", 1)
                    raise TransientError(
                        f"{exc} ({attempts_made} attempts to {breaker.host})",
                        retry_after=exc.retry_after,
                        consumer=self._context.route,
                    ) from exc
                # this record's failures opened the breaker: the policy decides, as for the rest
                raise CircuitOpen(breaker.host, options.breaker_cool_down_s, 0) from exc

        # a half-open breaker's probe is in flight: its answer is moments away, wait for it
        waiting = Retrying(
            stop=stop_when_event_set(self._context.stop),
            wait=_circuit_wait,
            retry=retry_if_exception(lambda exc: isinstance(exc, CircuitOpen) and exc.probing),
            sleep=self._context.sleep,
            before_sleep=lambda state: self._stats.add("unavailable_waits"),
            reraise=True,
        )
        try:
            waiting(attempts)
        except CircuitOpen as exc:
            if options.on_unavailable == "dead_letter" and not self._context.stop.is_set():
                self._stats.add("unavailable_dead_lettered")
                raise _Rejected(f"receiver unavailable: {exc}") from exc
            # "wait": held, with the rest of its key, until the breaker's next probe
            self._stats.add("unavailable_held")
            raise _Held(str(exc), retry_after=exc.retry_in_s, consumer=self._context.route) from exc

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
        except (_Rejected, RecordError) as exc:  # never retried: dead-lettered with the reason
            self._forget_partial(record, subscriptions)  # dead-lettered: a redrive sends anew
            done.put((key, "rejected", str(exc), None))
        except _Held as exc:
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

    def connections_opened(self) -> int:
        """Connections the shared pool opened (a processor.http.HttpPool counts them)."""
        return int(getattr(self._http, "connections_opened", 0))

    def close(self) -> None:
        with self._executor_lock:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None


def _secrets_usable(subscription: Subscription) -> bool:
    try:
        for secret in subscription.secrets:
            secret_key(secret)
    except ValueError:
        return False
    return True


def _circuit_wait(state: RetryCallState) -> float:
    exc = state.outcome.exception() if state.outcome else None
    return exc.retry_in_s if isinstance(exc, CircuitOpen) else 1.0


def _guard(url: str, context: ConsumerContext) -> bool:
    """Operator-written URLs are trusted, unless their host comes from a record or the
    operator asked for the guard everywhere (``[http] guard_operator_urls``)."""
    policy = context.egress or EgressPolicy()
    return policy.guard_operator_urls or host_is_templated(url)


def build(options: Mapping[str, Any], context: ConsumerContext) -> WebhookConsumer:
    opts = WebhookOptions.model_validate(options)
    source: SubscriptionSource
    if opts.subscriptions_table is not None and context.offline:
        source = StaticSubscriptions([])  # the table is read online only
    elif opts.subscriptions_table is not None:
        client = getattr(context.clients, "dynamodb", None)
        if client is None:
            raise ConfigError(
                f"{context.config_key}.options.subscriptions_table",
                opts.subscriptions_table,
                "needs DynamoDB access ([aws] settings)",
            )
        source = TableSubscriptions(
            client,
            opts.subscriptions_table,
            ttl_s=opts.subscriptions_ttl_s,
            stats=context.stats,
            max_subscriptions=opts.max_subscriptions,
        )
        try:
            source.lookup(None, "INSERT")  # read it now: a missing table stops the start
        except Exception as exc:  # noqa: BLE001 - becomes a configuration error naming the key
            raise ConfigError(
                f"{context.config_key}.options.subscriptions_table",
                opts.subscriptions_table,
                f"cannot read subscriptions: {exc}",
            ) from None
    elif opts.subscriptions is not None:
        source = StaticSubscriptions(
            [
                Subscription(
                    s.tenant,
                    s.url,
                    _all_secrets(s.secret, s.secrets) or _all_secrets(opts.secret, opts.secrets),
                    frozenset(s.events),
                    guarded=_guard(s.url, context),
                )
                for s in opts.subscriptions
            ]
        )
    else:
        assert opts.url is not None
        source = StaticSubscriptions(
            [
                Subscription(
                    ANY_TENANT,
                    opts.url,
                    _all_secrets(opts.secret, opts.secrets),
                    guarded=_guard(opts.url, context),
                )
            ]
        )
        if opts.url.startswith("http://") and not _all_secrets(opts.secret, opts.secrets):
            log.info("webhook_unsigned", route=context.route, url=redact_url(opts.url))
    return WebhookConsumer(opts, context, source)
