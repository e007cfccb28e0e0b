"""The batch_write consumer: de-duplicated, chunked, paced BatchWriteItem calls, or
conditional versioned writes (replay-safe projections)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import structlog
from tenacity import (
    Retrying,
)

from consumers.batch_write.limits import (
    DELETED_ATTRIBUTE,
    EXPIRES_ATTRIBUTE,
    MAX_BYTES_PER_CALL,
    MAX_ITEM_BYTES,
    MAX_PARTITION_KEY_BYTES,
    MAX_REQUESTS_PER_CALL,
    MAX_SORT_KEY_BYTES,
    Delete,
    Put,
    item_size,
    serialize_item,
    value_size,
)
from consumers.batch_write.options import BatchWriteOptions
from consumers.batch_write.pacing import AimdRate
from consumers.batch_write.queue import Queued, WriteQueue
from processor import (
    BatchResult,
    ConditionFailed,
    ConsumerContext,
    DynamoDBTable,
    EventName,
    RecordError,
    StreamRecord,
    TransientError,
    WriteAnswer,
    to_client_image,
)
from processor.retries import Backoff, retrying

__all__ = ["BatchWriteConsumer"]

log = structlog.get_logger()


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, TransientError)


def _unthrottled_transient(exc: BaseException) -> bool:
    """A 5xx or connection error: retried in the slot. A throttled call's writes go back to
    the queue instead (the pacer decides when calls go again)."""
    return isinstance(exc, TransientError) and not exc.throttled


# -- sizes (DynamoDB's rules: attribute names count, numbers about 1 byte per 2 digits) -------


@dataclass(slots=True)
class _Write:
    record: StreamRecord
    request: dict[str, Any]  # {"PutRequest": {...}} or {"DeleteRequest": {...}}
    size: int
    key: str  # the item's key attributes (_dedupe_key): one write per key in a batch


#: the longest a call refused whole waits (``_hold``): a partition banks about a second of
#: its capacity, so a longer wait at a batch's tail idles the table past what it can bank
#: (the capacity benchmark: 3 to 5 s waits made a round of 56 %)
HOLD_MAX_S = 1.0


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
        # the pacer and this consumer's retries own throttling: botocore makes each call once
        client = None if context.offline else context.clients.unretried("dynamodb")
        self._table = DynamoDBTable(client, options.table)
        self._keys = key_attributes
        self._transform = transform
        self._stats = context.stats
        self.rate = AimdRate(
            minimum=options.min_rate_per_s,
            maximum=options.max_rate_per_s,
            increase=options.rate_increase_per_s,
            clock=context.clock,
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
            key = serialize_item(result.key)
            return self._dedupe_key(key), {"DeleteRequest": {"Key": key}}
        item = serialize_item(result.item if isinstance(result, Put) else result)
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
            size = value_size(value)
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
            latest[key] = _Write(record, write, size, key)
        writes = list(latest.values())
        if self._options.versioned:
            self._in_parallel(self._conditional, writes)
        else:
            self._write_all(writes)
        for done in writes:
            self._stats.add("puts" if "PutRequest" in done.request else "deletes")
        return BatchResult(rejected=rejected) if rejected else None

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

    def _pace(self, items: int) -> float:
        """Wait for the pacer's turn; returns when the turn was asked for (the pacer's clock):
        a call paced before a cut was paced at the old rate (``_throttled``)."""
        paced_at = self.rate.now()
        wait = self.rate.acquire(items)
        if wait > 0:
            self._context.sleep(wait)
        return paced_at

    def _throttled(self, sent_at: float) -> None:
        self._stats.add("throttled")
        rate = self.rate.throttled(sent_at=sent_at)
        log.info("batch_write_rate_lowered", table=self._options.table, items_per_s=round(rate))

    def _retrying(self, retry_on: Callable[[BaseException], bool]) -> Retrying:
        return retrying(
            wait=Backoff(self._options.base_delay_s, self._options.max_delay_s),
            stop=self._context.stop,
            attempts=self._options.max_attempts,
            retry_on=retry_on,
            sleep=self._context.sleep,
            before_sleep=lambda s: log.warning(
                "batch_write_throttled",
                route=self._context.route,
                table=self._options.table,
                attempt=s.attempt_number,
                wait_s=round(s.upcoming_sleep, 3),
            ),
        )

    def _call(self, write: Callable[[], WriteAnswer], sent_at: float) -> tuple[WriteAnswer, float]:
        """The answer, and ``sent_at`` (when the call was paced) for ``_throttled``."""
        try:
            answer = write()
        except TransientError as exc:
            if exc.throttled:
                self._throttled(sent_at)
            raise
        self._stats.add("consumed_capacity_units", answer.consumed)
        if answer.retried:
            self._throttled(sent_at)  # botocore retried (throttling or 5xx) before this answer
        return answer, sent_at

    def _write_all(self, writes: list[_Write]) -> None:
        """The batch's writes in BatchWriteItem calls taken from one queue by up to
        ``concurrency`` slots: leftovers ride in the next call of any slot (queue.py)."""
        queue: WriteQueue[_Write] = WriteQueue(
            ((w, w.size) for w in writes),
            max_requests=MAX_REQUESTS_PER_CALL,
            max_bytes=MAX_BYTES_PER_CALL,
            max_attempts=self._options.max_attempts,
            stopped=self._context.stop.is_set,
        )
        calls = -(-len(writes) // MAX_REQUESTS_PER_CALL)
        slots = min(self._options.concurrency, calls)
        self._in_parallel(lambda _slot: self._slot(queue), range(slots))
        if queue.error is not None:
            raise queue.error
        if queue.left:
            raise TransientError(
                f"BatchWriteItem left {queue.left} of {len(writes)} items unprocessed"
                + (" (stopping)" if self._context.stop.is_set() else "")
                + f" after up to {self._options.max_attempts} attempts",
                consumer=self._context.route,
            )

    def _slot(self, queue: WriteQueue[_Write]) -> None:
        """One slot: calls until the queue is settled (or stopped, or a call failed)."""
        while (call := queue.take()) is not None:
            try:
                unprocessed = self._send(call, queue)
            except BaseException as exc:
                queue.fail(call, exc)
                raise
            back = queue.settle(call, unprocessed)
            if back:
                self._stats.add("unprocessed_retries", back)

    def _send(self, call: list[Queued[_Write]], queue: WriteQueue[_Write]) -> list[Queued[_Write]]:
        """One BatchWriteItem call; returns its writes that were not processed. A throttled
        call (nothing fitted) returns them all: they go back to the queue, and the pacer,
        not this slot, decides when calls go again. Other transient errors (5xx, connection)
        are retried here, with backoff."""
        requests = [q.write.request for q in call]

        def attempt() -> tuple[WriteAnswer, float]:
            paced_at = self._pace(len(requests))
            self._stats.add("batch_write_calls")
            return self._call(lambda: self._table.batch_write(requests), paced_at)

        try:
            answer, sent_at = self._retrying(_unthrottled_transient)(attempt)
        except TransientError as exc:
            if not exc.throttled:
                raise
            if queue.refusal_sends_back(call):  # else the batch ends now (settle)
                self._hold(call)
            return list(call)
        self.rate.accepted(len(requests) - len(answer.unprocessed))
        if answer.unprocessed:
            self._throttled(sent_at)
            by_key = {q.write.key: q for q in call}
            back = [by_key.get(self._request_key(r)) for r in answer.unprocessed]
            # one not recognised: resend the whole call (puts and deletes are idempotent)
            return list(call) if None in back else [q for q in back if q is not None]
        if not answer.retried:
            self.rate.succeeded()
        return []

    def _hold(self, call: list[Queued[_Write]]) -> None:
        """A call the table refused whole (nothing fitted: the table, or the partitions of
        its writes, had no capacity left) waits before its writes go back to the queue:
        ``base_delay_s`` doubled per refusal its most-refused write has met, up to
        ``max_delay_s`` and never over ``HOLD_MAX_S``, the second half drawn at random.
        Without it, a batch's last writes of a drained partition went round as fast as the
        pacer let them and used up their ``max_attempts`` in a few milliseconds (ADR 0032).
        Other slots go on meanwhile. The caller holds only a call some of whose writes go
        back (``WriteQueue.refusal_sends_back``)."""
        row = max(q.refusals for q in call) + 1  # this refusal included (settled after)
        ceiling = min(
            HOLD_MAX_S, self._options.max_delay_s, self._options.base_delay_s * 2 ** (row - 1)
        )
        self._context.sleep(ceiling / 2 + random.random() * ceiling / 2)

    def _request_key(self, request: Mapping[str, Any]) -> str:
        if "PutRequest" in request:
            return self._dedupe_key(request["PutRequest"]["Item"])
        return self._dedupe_key(request["DeleteRequest"]["Key"])

    # -- versioned (replay-safe) writes ---------------------------------------------------------

    def _conditional(self, write: _Write) -> None:
        options = self._options
        version = {"S": write.record.version}
        condition = {
            "ConditionExpression": "attribute_not_exists(#v) OR #v < :v",
            "ExpressionAttributeNames": {"#v": options.version_attribute},
            "ExpressionAttributeValues": {":v": version},
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

        def call() -> None:
            paced_at = self._pace(1)
            self._stats.add("conditional_calls")
            try:
                answer, _ = self._call(
                    lambda: self._table.write_if(operation, condition, **kwargs), paced_at
                )
            except ConditionFailed:
                self.rate.accepted(1)  # a failed condition is a write the table took
                self._stats.add("stale_skipped")  # the projection is already newer
                log.info(
                    "batch_write_stale_skipped",
                    route=self._context.route,
                    tenant=write.record.tenant,
                    sequence_number=write.record.sequence_number,
                )
                return
            self.rate.accepted(1)
            if not answer.retried:
                self.rate.succeeded()

        self._retrying(_transient)(call)

    def close(self) -> None:
        with self._executor_lock:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None
