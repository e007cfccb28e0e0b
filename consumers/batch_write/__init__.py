"""Mirror or project changes into a DynamoDB table.

INSERT and MODIFY put the new image; REMOVE deletes the key. Requests are de-duplicated per
key across the whole batch (the last change wins, since BatchWriteItem rejects a call that
names one key twice). Without a transform the image is written as it came from the stream: no
decode, no re-encode.

* Before any call, an item over DynamoDB's 400 KB, or a key over its limits (partition key
  2048 bytes, sort key 1024 bytes, non-empty), is rejected: dead-lettered with the reason.
* Calls carry at most 25 requests and 16 MB. Up to ``concurrency`` calls are in flight
  (the botocore pool is sized for them), taken from one queue per batch: what a call leaves
  in ``UnprocessedItems`` (or all of a throttled call) goes to the back of the queue and
  rides in a later call of any slot (``queue.py``), each write at most ``max_attempts``
  times. An adaptive rate per target table paces the calls so a throttled table is not
  hammered: unlimited until throttled, then a decrease once per congestion event (calls
  paced before the last decrease do not decrease it again) to just under what the table
  took over the last second (at most by half), and an additive increase per clean call.
  Other transient errors are retried in the slot with exponential backoff and full jitter.
  ``ReturnConsumedCapacity`` is counted (``consumed_capacity_units``).
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

from collections.abc import Mapping
from typing import Any

from consumers.batch_write.consumer import BatchWriteConsumer
from consumers.batch_write.limits import Delete, Put, item_size
from consumers.batch_write.options import BatchWriteOptions
from consumers.batch_write.pacing import AimdRate
from processor import (
    ConfigError,
    ConsumerContext,
    DynamoDBTable,
    declare_aws_connections,
    load_callable,
)

__all__ = ["AimdRate", "BatchWriteConsumer", "Delete", "Put", "build", "item_size"]


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
    keys = DynamoDBTable(context.clients.dynamodb, opts.table).key_attributes()
    if keys is None:
        raise ConfigError(
            f"{context.config_key}.options.table",
            opts.table,
            "no such table; create it (with the source table's key schema) first",
        )
    return BatchWriteConsumer(opts, context, keys, transform)


def _aws_connections(options: Mapping[str, Any]) -> int:
    """Up to ``concurrency`` BatchWriteItem calls of one batch are in flight at once."""
    try:
        return BatchWriteOptions.model_validate(options).concurrency
    except ValueError:
        return 0  # build() reports the option, naming its key


declare_aws_connections(build, _aws_connections)
