"""Mirror or project changes into a DynamoDB table.

INSERT and MODIFY put the new image; REMOVE deletes the key. Requests are de-duplicated per
key across the whole batch (the last change wins, since BatchWriteItem rejects a call that
names one key twice). Without a transform the image is written as it came from the stream: no
decode, no re-encode.

* Before any call, an item over DynamoDB's 400 KB, or a key over its limits (partition key
  2048 bytes, sort key 1024 bytes, non-empty), is rejected: dead-lettered with the reason.
* Calls carry at most 25 requests and 16 MB. Up to ``concurrency`` calls are in flight
  (the botocore pool is sized for them); ``UnprocessedItems`` and throttling are retried with
  exponential backoff and full jitter, and an adaptive rate per target table (unlimited until
  throttled, then multiplicative decrease on throttling and additive increase per clean
  call) paces the calls so a throttled table is not hammered. ``ReturnConsumedCapacity`` is
  counted (``consumed_capacity_units``).
* ``versioned = true`` makes the projection replay-safe (ADR 0009): each write is a
  conditional PutItem/DeleteItem that only applies if the item's ``version_attribute`` is
  older than the record's sequence number, so a replayed older record never overwrites a
  newer projection. With ``tombstone_ttl_s`` a REMOVE leaves a versioned tombstone
  (``_dsp_deleted = true``, expiring at ``_dsp_expires``) instead of deleting, so an older
  replayed INSERT cannot bring the item back either.

``options.transform = "package.module:callable"`` maps a record to an item to put (a dict of
Python values, or :class:`Put`), a key to delete (:class:`Delete`), or ``None`` to skip.
"""

from __future__ import annotations

import base64
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import structlog
from boto3.dynamodb.types import TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_when_event_set,
    wait_random_exponential,
)

from consumers._options import Options
from processor import (
    THROTTLING_CODES,
    BatchResult,
    ConfigError,
    ConsumerContext,
    EventName,
    RecordError,
    StreamRecord,
    TransientError,
    load_callable,
    to_client_image,
    translate_client_error,
)

__all__ = ["AimdRate", "BatchWriteConsumer", "Delete", "Put", "build", "item_size"]

log = structlog.get_logger()

MAX_REQUESTS_PER_CALL = 25
MAX_BYTES_PER_CALL = 16 * 1024 * 1024
MAX_ITEM_BYTES = 400 * 1024
MAX_PARTITION_KEY_BYTES = 2048
MAX_SORT_KEY_BYTES = 1024
#: sequence numbers are 21 to 40 digits: zero-padded to 40 they compare as strings
VERSION_WIDTH = 40
DELETED_ATTRIBUTE = "_dsp_deleted"
EXPIRES_ATTRIBUTE = "_dsp_expires"
_serialize = TypeSerializer().serialize


class BatchWriteOptions(Options):
    table: str = Field(min_length=3, max_length=255)
    transform: str | None = None
    max_attempts: int = Field(default=8, ge=1, le=100)
    base_delay_s: float = Field(default=0.05, gt=0)
    max_delay_s: float = Field(default=5.0, gt=0)
    concurrency: int = Field(default=4, ge=1, le=64)
    min_rate_per_s: float = Field(default=25.0, gt=0)
    max_rate_per_s: float = Field(default=40000.0, gt=0)  # above this: unlimited again
    rate_increase_per_s: float = Field(default=100.0, gt=0)  # added per successful call
    versioned: bool = False
    version_attribute: str = Field(default="_dsp_version", min_length=1, max_length=255)
    tombstone_ttl_s: int | None = Field(default=None, ge=60)


@dataclass(frozen=True, slots=True)
class Put:
    """Put this item (plain Python values, as boto3's resource layer takes them)."""

    item: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete the item with this key (plain Python values)."""

    key: Mapping[str, Any]


class _Unprocessed(Exception):
    pass


# -- sizes (DynamoDB's rules: attribute names count, numbers about 1 byte per 2 digits) -------


def _value_size(value: Mapping[str, Any]) -> int:
    ((tag, raw),) = value.items()
    if tag == "S":
        return len(raw.encode())
    if tag == "N":
        return (len(str(raw).lstrip("-").replace(".", "").lstrip("0")) + 1) // 2 + 1
    if tag == "B":
        return len(raw) if isinstance(raw, bytes | bytearray) else len(base64.b64decode(raw))
    if tag in ("BOOL", "NULL"):
        return 1
    if tag == "SS":
        return sum(len(v.encode()) for v in raw)
    if tag == "NS":
        return sum(_value_size({"N": v}) for v in raw)
    if tag == "BS":
        return sum(_value_size({"B": v}) for v in raw)
    if tag == "L":
        return 3 + sum(1 + _value_size(v) for v in raw)
    if tag == "M":
        return 3 + sum(1 + len(k.encode()) + _value_size(v) for k, v in raw.items())
    return 0


def item_size(item: Mapping[str, Any]) -> int:
    """An item's size as DynamoDB counts it against the 400 KB limit (within a few bytes)."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


class AimdRate:
    """Items per second for one table: additive increase, multiplicative decrease (thread-safe).

    Unlimited until the first throttling; then half the rate actually sent over the last
    second, halved again on each further throttling (not below ``minimum``), raised by
    ``increase`` after each clean call, and unlimited again once above ``maximum``.
    ``acquire(n)`` returns how long to wait before sending ``n`` items.
    """

    def __init__(
        self,
        *,
        minimum: float,
        maximum: float,
        increase: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate: float | None = None
        self.lowest: float | None = None
        self._min = minimum
        self._max = maximum
        self._increase = increase
        self._clock = clock
        self._lock = threading.Lock()
        self._next = clock()
        self._sent: deque[tuple[float, int]] = deque()  # (when, items) over the last second

    def acquire(self, items: int) -> float:
        with self._lock:
            now = self._clock()
            self._sent.append((now, items))
            while self._sent and now - self._sent[0][0] > 1.0:
                self._sent.popleft()
            if self.rate is None:
                return 0.0
            start = max(now, self._next)
            self._next = start + items / self.rate
            return start - now

    def succeeded(self) -> None:
        with self._lock:
            if self.rate is not None:
                self.rate += self._increase
                if self.rate > self._max:
                    self.rate = None

    def throttled(self) -> float:
        with self._lock:
            sent = float(sum(n for _, n in self._sent))
            current = self.rate if self.rate is not None else sent
            self.rate = max(self._min, current / 2)
            self.lowest = self.rate if self.lowest is None else min(self.lowest, self.rate)
            return self.rate


def _serialize_item(values: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return {name: _serialize(value) for name, value in values.items()}
    except TypeError as exc:
        raise RecordError(f"transform returned a value DynamoDB cannot store: {exc}") from exc


@dataclass(slots=True)
class _Write:
    record: StreamRecord
    request: dict[str, Any]  # {"PutRequest": {...}} or {"DeleteRequest": {...}}
    size: int


class BatchWriteConsumer:
    def __init__(
        self,
        options: BatchWriteOptions,
        context: ConsumerContext,
        key_attributes: tuple[str, ...],
        transform: Callable[[StreamRecord], Any] | None,
    ) -> None:
        self._options = options
        self._context = context
        self._client: Any = None if context.offline else context.clients.dynamodb
        self._keys = key_attributes
        self._transform = transform
        self._stats = context.stats
        self.rate = AimdRate(
            minimum=options.min_rate_per_s,
            maximum=options.max_rate_per_s,
            increase=options.rate_increase_per_s,
        )
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()

    # -- requests -----------------------------------------------------------------------------

    def _request(self, record: StreamRecord) -> tuple[str, dict[str, Any]] | None:
        """(dedupe key, write request) for one record, or None to skip it."""
        if self._transform is None:
            if record.event_name is EventName.REMOVE:
                key = to_client_image(record.wire_keys)
                return self._dedupe_key(key), {"DeleteRequest": {"Key": key}}
            image = record.wire_new_image
            if image is None:
                raise RecordError("record has no NewImage; the stream view must include new images")
            item = to_client_image(image)
            return self._dedupe_key(item), {"PutRequest": {"Item": item}}
        result = self._transform(record)
        if result is None:
            self._stats.add("skipped")
            return None
        if isinstance(result, Delete):
            key = _serialize_item(result.key)
            return self._dedupe_key(key), {"DeleteRequest": {"Key": key}}
        item = _serialize_item(result.item if isinstance(result, Put) else result)
        return self._dedupe_key(item), {"PutRequest": {"Item": item}}

    def _dedupe_key(self, item: Mapping[str, Any]) -> str:
        parts = []
        for name in self._keys:
            if name not in item:
                raise RecordError(
                    f"item has no key attribute {name!r} of table {self._options.table}"
                )
            parts.append(repr(sorted(item[name].items())))
        return "\x1f".join(parts)

    def _check_limits(self, write: dict[str, Any]) -> int:
        """The request's size; raises RecordError naming the DynamoDB limit it breaks."""
        item = (
            write["PutRequest"]["Item"] if "PutRequest" in write else write["DeleteRequest"]["Key"]
        )
        for index, name in enumerate(self._keys):
            value = item[name]
            ((tag, _),) = value.items()
            if tag not in ("S", "N", "B"):
                raise RecordError(f"key attribute {name!r} is of type {tag}; keys are S, N or B")
            size = _value_size(value)
            limit = MAX_PARTITION_KEY_BYTES if index == 0 else MAX_SORT_KEY_BYTES
            if size > limit:
                raise RecordError(
                    f"key attribute {name!r} is {size} bytes; DynamoDB allows {limit}"
                )
            if size == 0 and tag in ("S", "B"):
                raise RecordError(f"key attribute {name!r} is empty; DynamoDB keys cannot be")
        size = item_size(item)
        if size > MAX_ITEM_BYTES:
            raise RecordError(
                f"item is {size:,} bytes; DynamoDB's limit is {MAX_ITEM_BYTES:,} (400 KB)"
            )
        return size

    # -- a batch ------------------------------------------------------------------------------

    def __call__(self, records: Sequence[StreamRecord]) -> BatchResult | None:
        latest: dict[str, _Write] = {}
        rejected: dict[str, str] = {}
        for record in records:
            try:
                request = self._request(record)
                if request is None:
                    continue
                key, write = request
                size = self._check_limits(write)
            except RecordError as exc:
                rejected[record.event_id] = str(exc)
                self._stats.add("rejected")
                log.warning(
                    "batch_write_rejected",
                    route=self._context.route,
                    tenant=record.tenant,
                    sequence_number=record.sequence_number,
                    reason=str(exc),
                )
                continue
            latest.pop(key, None)  # last change wins, and moves to the end
            latest[key] = _Write(record, write, size)
        writes = list(latest.values())
        if self._options.versioned:
            self._in_parallel(self._conditional, writes)
        else:
            self._in_parallel(self._write, list(self._chunks(writes)))
        for done in writes:
            self._stats.add("puts" if "PutRequest" in done.request else "deletes")
        return BatchResult(rejected=rejected) if rejected else None

    def _chunks(self, writes: list[_Write]) -> list[list[dict[str, Any]]]:
        chunks: list[list[dict[str, Any]]] = []
        current: list[dict[str, Any]] = []
        size = 0
        for write in writes:
            if current and (
                len(current) == MAX_REQUESTS_PER_CALL or size + write.size > MAX_BYTES_PER_CALL
            ):
                chunks.append(current)
                current, size = [], 0
            current.append(write.request)
            size += write.size
        if current:
            chunks.append(current)
        return chunks

    def _in_parallel(self, function: Callable[[Any], None], items: Sequence[Any]) -> None:
        if len(items) <= 1 or self._options.concurrency == 1:
            for item in items:
                function(item)
            return
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self._options.concurrency, thread_name_prefix="dsp-batch-write"
                )
            executor = self._executor
        futures = [executor.submit(function, item) for item in items]
        errors = []
        for future in futures:  # wait for all, then surface the first error
            error = future.exception()
            if error is not None:
                errors.append(error)
        if errors:
            raise errors[0]

    def _pace(self, items: int) -> None:
        wait = self.rate.acquire(items)
        if wait > 0:
            self._context.sleep(wait)

    def _throttled(self) -> None:
        self._stats.add("throttled")
        rate = self.rate.throttled()
        log.info("batch_write_rate_lowered", table=self._options.table, items_per_s=round(rate))

    def _retrying(self, retry_on: tuple[type[BaseException], ...]) -> Retrying:
        return Retrying(
            stop=stop_after_attempt(self._options.max_attempts)
            | stop_when_event_set(self._context.stop),
            wait=wait_random_exponential(
                multiplier=self._options.base_delay_s, max=self._options.max_delay_s
            ),
            retry=retry_if_exception_type(retry_on),
            sleep=self._context.sleep,
            before_sleep=lambda s: log.warning(
                "batch_write_throttled",
                route=self._context.route,
                table=self._options.table,
                attempt=s.attempt_number,
                wait_s=round(s.upcoming_sleep, 3),
            ),
            reraise=True,
        )

    def _translate(self, exc: ClientError | BotoCoreError, operation: str) -> Exception:
        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            if code in THROTTLING_CODES:
                self._throttled()
            if code == "ValidationException":
                return RecordError(f"{operation} rejected the request: {exc}")
        return translate_client_error(exc, operation)

    def _write(self, chunk: list[dict[str, Any]]) -> None:
        pending = {self._options.table: chunk}

        def call() -> None:
            nonlocal pending
            self._pace(sum(len(v) for v in pending.values()))
            self._stats.add("batch_write_calls")
            try:
                answer = self._client.batch_write_item(
                    RequestItems=pending, ReturnConsumedCapacity="TOTAL"
                )
            except (ClientError, BotoCoreError) as exc:
                raise self._translate(exc, "BatchWriteItem") from exc
            for used in answer.get("ConsumedCapacity") or []:
                self._stats.add("consumed_capacity_units", used.get("CapacityUnits", 0))
            if answer.get("ResponseMetadata", {}).get("RetryAttempts", 0):
                self._throttled()  # botocore retried (throttling or 5xx) before this answer
            unprocessed = answer.get("UnprocessedItems") or {}
            if unprocessed:
                pending = unprocessed
                count = sum(len(v) for v in unprocessed.values())
                self._stats.add("unprocessed_retries", count)
                self._throttled()
                raise _Unprocessed(f"{count} unprocessed items")
            if not answer.get("ResponseMetadata", {}).get("RetryAttempts", 0):
                self.rate.succeeded()

        try:
            self._retrying((_Unprocessed, TransientError))(call)
        except _Unprocessed as exc:
            raise TransientError(
                f"BatchWriteItem left {exc} after {self._options.max_attempts} attempts",
                consumer=self._context.route,
            ) from exc

    # -- versioned (replay-safe) writes ---------------------------------------------------------

    def _conditional(self, write: _Write) -> None:
        options = self._options
        version = {"S": write.record.sequence_number.zfill(VERSION_WIDTH)}
        condition = {
            "ConditionExpression": "attribute_not_exists(#v) OR #v < :v",
            "ExpressionAttributeNames": {"#v": options.version_attribute},
            "ExpressionAttributeValues": {":v": version},
            "ReturnConsumedCapacity": "TOTAL",
        }
        if "PutRequest" in write.request:
            item = {**write.request["PutRequest"]["Item"], options.version_attribute: version}
            operation, kwargs = "PutItem", {"Item": item}
        elif options.tombstone_ttl_s is not None:
            item = {
                **write.request["DeleteRequest"]["Key"],
                options.version_attribute: version,
                DELETED_ATTRIBUTE: {"BOOL": True},
                EXPIRES_ATTRIBUTE: {"N": str(int(time.time()) + options.tombstone_ttl_s)},
            }
            operation, kwargs = "PutItem", {"Item": item}
        else:
            operation, kwargs = "DeleteItem", {"Key": write.request["DeleteRequest"]["Key"]}
        method = self._client.put_item if operation == "PutItem" else self._client.delete_item

        def call() -> None:
            self._pace(1)
            self._stats.add("conditional_calls")
            try:
                answer = method(TableName=options.table, **kwargs, **condition)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                    self._stats.add("stale_skipped")  # the projection is already newer
                    log.info(
                        "batch_write_stale_skipped",
                        route=self._context.route,
                        tenant=write.record.tenant,
                        sequence_number=write.record.sequence_number,
                    )
                    return
                raise self._translate(exc, operation) from exc
            except BotoCoreError as exc:
                raise self._translate(exc, operation) from exc
            used = answer.get("ConsumedCapacity") or {}
            self._stats.add("consumed_capacity_units", used.get("CapacityUnits", 0))
            if answer.get("ResponseMetadata", {}).get("RetryAttempts", 0):
                self._throttled()
            else:
                self.rate.succeeded()

        self._retrying((TransientError,))(call)

    def close(self) -> None:
        with self._executor_lock:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None


def build(options: Mapping[str, Any], context: ConsumerContext) -> BatchWriteConsumer:
    opts = BatchWriteOptions.model_validate(options)
    if not context.stream.has_new_images and not context.offline:
        raise ConfigError(
            f"{context.config_key}.consumer",
            "batch_write",
            f"the stream's view type is {context.stream.view_type}; batch_write needs "
            "NEW_IMAGE or NEW_AND_OLD_IMAGES (change the table's StreamSpecification)",
        )
    transform = None
    if opts.transform:
        try:
            transform = load_callable(opts.transform)
        except ValueError as exc:
            raise ConfigError(
                f"{context.config_key}.options.transform", opts.transform, str(exc)
            ) from None
    if context.offline:  # the target table is looked up online only
        return BatchWriteConsumer(opts, context, context.stream.key_attributes, transform)
    try:
        table = context.clients.dynamodb.describe_table(TableName=opts.table)["Table"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            raise ConfigError(
                f"{context.config_key}.options.table",
                opts.table,
                "no such table; create it (with the source table's key schema) first",
            ) from None
        raise translate_client_error(exc, "DescribeTable") from exc
    keys = tuple(k["AttributeName"] for k in table["KeySchema"])
    return BatchWriteConsumer(opts, context, keys, transform)
