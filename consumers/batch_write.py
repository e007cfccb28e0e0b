"""Mirror or project changes into a DynamoDB table with BatchWriteItem.

INSERT and MODIFY put the new image; REMOVE deletes the key. Requests are de-duplicated per
key across the whole batch (the last change wins, since BatchWriteItem rejects a call that
names one key twice), sent 25 at a time, and ``UnprocessedItems`` and throttling are retried
with exponential backoff and full jitter. Without a transform the image is written as it
came from the stream: no decode, no re-encode.

``options.transform = "package.module:callable"`` maps a record to an item to put (a dict of
Python values, or :class:`Put`), a key to delete (:class:`Delete`), or ``None`` to skip.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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

__all__ = ["BatchWriteConsumer", "Delete", "Put", "build"]

log = structlog.get_logger()

MAX_REQUESTS_PER_CALL = 25
_serialize = TypeSerializer().serialize


class BatchWriteOptions(Options):
    table: str = Field(min_length=3, max_length=255)
    transform: str | None = None
    max_attempts: int = Field(default=8, ge=1, le=100)
    base_delay_s: float = Field(default=0.05, gt=0)
    max_delay_s: float = Field(default=5.0, gt=0)


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


def _serialize_item(values: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return {name: _serialize(value) for name, value in values.items()}
    except TypeError as exc:
        raise RecordError(f"transform returned a value DynamoDB cannot store: {exc}") from exc


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
        self._client = context.clients.dynamodb
        self._keys = key_attributes
        self._transform = transform
        self._stats = context.stats

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

    # -- calls --------------------------------------------------------------------------------

    def __call__(self, records: Sequence[StreamRecord]) -> None:
        latest: dict[str, dict[str, Any]] = {}
        for record in records:
            request = self._request(record)
            if request is None:
                continue
            key, write = request
            latest.pop(key, None)  # last change wins, and moves to the end
            latest[key] = write
        writes = list(latest.values())
        for start in range(0, len(writes), MAX_REQUESTS_PER_CALL):
            self._write(writes[start : start + MAX_REQUESTS_PER_CALL])
        for write in writes:
            self._stats.add("puts" if "PutRequest" in write else "deletes")

    def _write(self, chunk: list[dict[str, Any]]) -> None:
        pending = {self._options.table: chunk}

        def call() -> None:
            nonlocal pending
            self._stats.add("batch_write_calls")
            try:
                answer = self._client.batch_write_item(
                    RequestItems=pending, ReturnConsumedCapacity="TOTAL"
                )
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code in THROTTLING_CODES:
                    self._stats.add("throttled")
                if code == "ValidationException":
                    raise RecordError(f"BatchWriteItem rejected the batch: {exc}") from exc
                raise translate_client_error(exc, "BatchWriteItem") from exc
            except BotoCoreError as exc:
                raise translate_client_error(exc, "BatchWriteItem") from exc
            for used in answer.get("ConsumedCapacity") or []:
                self._stats.add("consumed_capacity_units", used.get("CapacityUnits", 0))
            unprocessed = answer.get("UnprocessedItems") or {}
            if unprocessed:
                pending = unprocessed
                count = sum(len(v) for v in unprocessed.values())
                self._stats.add("unprocessed_retries", count)
                raise _Unprocessed(f"{count} unprocessed items")

        retrying = Retrying(
            stop=stop_after_attempt(self._options.max_attempts)
            | stop_when_event_set(self._context.stop),
            wait=wait_random_exponential(
                multiplier=self._options.base_delay_s, max=self._options.max_delay_s
            ),
            retry=retry_if_exception_type((_Unprocessed, TransientError)),
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
        try:
            retrying(call)
        except _Unprocessed as exc:
            raise TransientError(
                f"BatchWriteItem left {exc} after {self._options.max_attempts} attempts",
                consumer=self._context.route,
            ) from exc


def build(options: Mapping[str, Any], context: ConsumerContext) -> BatchWriteConsumer:
    opts = BatchWriteOptions.model_validate(options)
    if not context.stream.has_new_images:
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
