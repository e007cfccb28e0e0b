"""POST one JSON document per record to a URL, through the process's shared HTTP pool.

Body: ``event_id``, ``event_name``, ``table_name``, ``keys``, ``new_image``, ``old_image``,
``sequence_number``, ``approximate_creation_time`` (ISO 8601 UTC), with plain JSON values
(numbers exact, sets as sorted lists, binary as base64). Headers: ``Idempotency-Key`` (the
record's ``event_id``, the same on every attempt) and, with ``options.secret``,
``X-DSP-Signature: sha256=<hex HMAC-SHA256 of the exact body>``.

5xx, 408, 429 (honouring ``Retry-After``) and connection errors are retried with exponential
backoff and full jitter; any other 4xx is final for that record (dead-lettered, delivery goes
on). Records are delivered in stream order; after a record exhausts its retries the rest of
the batch is reported failed, so per-key order holds on the engine's retry.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import structlog
import urllib3
from pydantic import Field, field_validator
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_when_event_set,
    wait_random_exponential,
)

from consumers._options import Options
from processor import (
    BatchResult,
    ConsumerContext,
    StreamRecord,
    TransientError,
    plain_image,
)

__all__ = ["WebhookConsumer", "build", "encode_body", "sign"]

log = structlog.get_logger()

RETRY_STATUS_CODES = frozenset({408, 429, 500, 502, 503, 504})
_encoder = msgspec.json.Encoder(decimal_format="number")


class WebhookOptions(Options):
    url: str
    secret: str | None = Field(default=None, repr=False)
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    max_attempts: int = Field(default=5, ge=1, le=100)
    base_delay_s: float = Field(default=0.2, gt=0)
    max_delay_s: float = Field(default=30.0, gt=0)
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parsed = urllib3.util.parse_url(value)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError("must be an http:// or https:// URL")
        return value


def encode_body(record: StreamRecord, *, table_name: str) -> bytes:
    """The exact bytes POSTed for ``record``."""
    created = record.approximate_creation_time
    return _encoder.encode(
        {
            "event_id": record.event_id,
            "event_name": record.event_name.value,
            "table_name": record.table_name or table_name,
            "keys": plain_image(record.wire_keys),
            "new_image": plain_image(record.wire_new_image),
            "old_image": plain_image(record.wire_old_image),
            "sequence_number": record.sequence_number,
            "approximate_creation_time": created.isoformat().replace("+00:00", "Z")
            if created
            else None,
        }
    )


def sign(body: bytes, secret: str) -> str:
    """The ``X-DSP-Signature`` header value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class _Rejected(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}: {body[:200]!r}")


class WebhookConsumer:
    def __init__(self, options: WebhookOptions, context: ConsumerContext) -> None:
        self._options = options
        self._context = context
        self._http: urllib3.PoolManager = context.http
        self._stats = context.stats
        self._table = context.stream.table_name

    def _post(self, body: bytes, headers: dict[str, str]) -> None:
        self._stats.add("attempts")
        try:
            response = self._http.request(
                "POST",
                self._options.url,
                body=body,
                headers=headers,
                timeout=self._options.timeout_s,
                retries=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise TransientError(
                f"POST {self._options.url}: {exc}", consumer=self._context.route
            ) from exc
        status = response.status
        if 200 <= status < 300:
            return
        if status in RETRY_STATUS_CODES:
            raise TransientError(
                f"POST {self._options.url}: HTTP {status}",
                retry_after=_retry_after(response.headers.get("Retry-After")),
                consumer=self._context.route,
            )
        raise _Rejected(status, response.data)

    def _wait(self, state: RetryCallState) -> float:
        jitter = wait_random_exponential(
            multiplier=self._options.base_delay_s, max=self._options.max_delay_s
        )
        delay = float(jitter(state))
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, TransientError) and exc.retry_after is not None:
            delay = max(delay, min(exc.retry_after, self._options.max_delay_s))
        return delay

    def _log_retry(self, record: StreamRecord, state: RetryCallState) -> None:
        self._stats.add("retries")
        log.warning(
            "webhook_retrying",
            route=self._context.route,
            event_id=record.event_id,
            attempt=state.attempt_number,
            wait_s=round(state.upcoming_sleep, 3),
            error=str(state.outcome.exception()) if state.outcome else None,
        )

    def deliver(self, record: StreamRecord) -> None:
        """POST one record, retrying what is worth retrying. Raises _Rejected or TransientError."""
        body = encode_body(record, table_name=self._table)
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": record.event_id,
            **self._options.headers,
        }
        if self._options.secret:
            headers["X-DSP-Signature"] = sign(body, self._options.secret)
        retrying = Retrying(
            stop=stop_after_attempt(self._options.max_attempts)
            | stop_when_event_set(self._context.stop),
            wait=self._wait,
            retry=retry_if_exception_type(TransientError),
            sleep=self._context.sleep,
            before_sleep=lambda state: self._log_retry(record, state),
            reraise=True,
        )
        retrying(self._post, body, headers)

    def __call__(self, records: Sequence[StreamRecord]) -> BatchResult | None:
        rejected: dict[str, str] = {}
        for index, record in enumerate(records):
            try:
                self.deliver(record)
            except _Rejected as exc:
                rejected[record.event_id] = str(exc)
                self._stats.add("rejected")
                continue
            except TransientError as exc:
                log.warning(
                    "webhook_failed",
                    route=self._context.route,
                    event_id=record.event_id,
                    error=str(exc),
                )
                return BatchResult.failed(records[index:], rejected=rejected)
            self._stats.add("posted")
        return BatchResult(rejected=rejected) if rejected else None

    def connections_opened(self) -> int:
        pool = self._http.connection_from_url(self._options.url)
        return int(getattr(pool, "num_connections", 0))


def build(options: Mapping[str, Any], context: ConsumerContext) -> WebhookConsumer:
    opts = WebhookOptions.model_validate(options)
    if opts.url.startswith("http://") and opts.secret is None:
        log.info("webhook_unsigned", route=context.route, url=opts.url)
    return WebhookConsumer(opts, context)
