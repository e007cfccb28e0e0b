"""One record to one subscription: signing, the egress guard, retries with Retry-After,
and a circuit breaker per host (bounded: least recently used closed breakers go first)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import structlog
import urllib3
from tenacity import (
    RetryCallState,
)

from consumers.webhook.options import WebhookOptions
from consumers.webhook.subscriptions import (
    MissingTenant,
    Subscription,
)
from processor import (
    CircuitOpen,
    ConsumerContext,
    DestinationNotAllowed,
    Signal,
    StreamRecord,
    TransientError,
    WaitRetryAfter,
    parse_retry_after,
    redact_text,
    redact_url,
)
from processor.retries import retrying
from processor.webhooks import (
    CircuitBreaker,
    EgressPolicy,
    pinned_request,
    secret_key,
    signature_headers,
    standard_headers,
)

__all__ = ["MAX_BREAKERS", "Delivery"]

log = structlog.get_logger()

RETRY_STATUS_CODES = frozenset({408, 429, 500, 502, 503, 504})
#: per-host circuit breakers kept (tenants choose hosts); least recently used closed first out
MAX_BREAKERS = 1_000


class Rejected(Signal):
    pass


class Held(TransientError):
    """Not attempted: the destination's breaker is open (``on_unavailable = "wait"``)."""


class Delivery:
    """POSTs one record's body to one subscription; raises Rejected, Held or TransientError."""

    def __init__(self, options: WebhookOptions, context: ConsumerContext) -> None:
        self._options = options
        self._context = context
        self._wait_retry_after = WaitRetryAfter(options.base_delay_s, options.max_delay_s)
        self._http: urllib3.PoolManager = context.http
        self._stats = context.stats
        self._egress: EgressPolicy = context.egress or EgressPolicy()
        self._breakers: OrderedDict[str, CircuitBreaker] = OrderedDict()
        self._breakers_lock = threading.Lock()

    @property
    def breakers(self) -> int:
        return len(self._breakers)

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
            raise Rejected(f"POST {redact_url(url)}: HTTP {status}: {response.data[:200]!r}")

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
        """POST ``body`` to the subscription. Raises Rejected, Held or TransientError."""
        url, headers = self._request(record, subscription)
        breaker = self.breaker(url)
        options = self._options

        def attempts() -> None:
            posts = retrying(
                wait=self._wait_retry_after,
                stop=self._context.stop,
                attempts=options.max_attempts,
                deadline_s=options.deadline_s,
                sleep=self._context.sleep,
                before_sleep=lambda state: self._log_retry(record, url, state),
            )
            try:
                posts(self._post, url, body, headers, subscription, breaker)
            except DestinationNotAllowed as exc:
                self._stats.add("destination_refused")
                raise Rejected(str(exc)) from None
            except TransientError as exc:
                if breaker.state == "closed":  # the cause, for the dead letter if it comes to it
                    attempts_made = posts.statistics.get("attempt_number", 1)
                    raise TransientError(
                        f"{exc} ({attempts_made} attempts to {breaker.host})",
                        retry_after=exc.retry_after,
                        consumer=self._context.route,
                    ) from exc
                # this record's failures opened the breaker: the policy decides, as for the rest
                raise CircuitOpen(breaker.host, options.breaker_cool_down_s, 0) from exc

        self._while_probing(attempts)

    def _request(
        self, record: StreamRecord, subscription: Subscription
    ) -> tuple[str, dict[str, str]]:
        """The URL (``{tenant}`` filled in) and headers; Rejected when neither can be made."""
        try:
            url = subscription.url_for(record.tenant)
        except MissingTenant as exc:
            raise Rejected(str(exc)) from None
        if self._options.signature == "standard-webhooks" and not _secrets_usable(subscription):
            raise Rejected(
                "the subscription's secret is not a Standard Webhooks key (whsec_<base64>)"
            )
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": record.event_id,
            **self._options.headers,
        }
        return url, headers

    def _while_probing(self, attempts: Callable[[], None]) -> None:
        """Run the attempts; while a half-open breaker's probe is in flight (its answer is
        moments away) wait for it; an open breaker holds or dead-letters per on_unavailable."""
        options = self._options
        # the attempts run inside this wait (ADR 0027): while a half-open breaker's probe is
        # in flight its answer is moments away, and no attempt was spent
        waiting = retrying(
            wait=_circuit_wait,
            stop=self._context.stop,
            retry_on=lambda exc: isinstance(exc, CircuitOpen) and exc.probing,
            sleep=self._context.sleep,
            before_sleep=lambda state: self._stats.add("unavailable_waits"),
        )
        try:
            waiting(attempts)
        except CircuitOpen as exc:
            if options.on_unavailable == "dead_letter" and not self._context.stop.is_set():
                self._stats.add("unavailable_dead_lettered")
                raise Rejected(f"receiver unavailable: {exc}") from exc
            # "wait": held, with the rest of its key, until the breaker's next probe
            self._stats.add("unavailable_held")
            raise Held(str(exc), retry_after=exc.retry_in_s, consumer=self._context.route) from exc

    def connections_opened(self) -> int:
        """Connections the shared pool opened (a processor.http.HttpPool counts them)."""
        return int(getattr(self._http, "connections_opened", 0))


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
