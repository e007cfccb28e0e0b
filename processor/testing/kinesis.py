"""Changes in the Kinesis Data Streams for DynamoDB format, for tests.

moto serves Kinesis but never forwards table writes to it, so a test writes what DynamoDB
would: :func:`kds_payload` builds the record's ``Data`` in the documented shape, and
:func:`put_change` puts it with the item key as partition key.
"""

from __future__ import annotations

import itertools
import json
import uuid
from typing import Any

__all__ = ["kds_payload", "put_change"]

_clock_us = itertools.count(1_721_011_165_000_000, 1_000)


def kds_payload(
    keys: dict[str, Any],
    *,
    event_name: str = "INSERT",
    new_image: dict[str, Any] | None = None,
    old_image: dict[str, Any] | None = None,
    table: str = "orders",
    created_us: int | None = None,
    event_id: str | None = None,
    region: str = "us-east-1",
) -> bytes:
    """One change as DynamoDB writes it to Kinesis (µs creation time, precision given).
    Images default from the event name (new for INSERT and MODIFY, none for REMOVE)."""
    if new_image is None and event_name != "REMOVE":
        new_image = dict(keys)
    ddb: dict[str, Any] = {
        "ApproximateCreationDateTime": created_us if created_us is not None else next(_clock_us),
        "Keys": keys,
        "SizeBytes": 100,
        "ApproximateCreationDateTimePrecision": "MICROSECOND",
    }
    if new_image is not None:
        ddb["NewImage"] = new_image
    if old_image is not None:
        ddb["OldImage"] = old_image
    doc = {
        "awsRegion": region,
        "eventID": event_id or str(uuid.uuid4()),
        "eventName": event_name,
        "userIdentity": None,
        "recordFormat": "application/json",
        "tableName": table,
        "dynamodb": ddb,
        "eventSource": "aws:dynamodb",
    }
    return json.dumps(doc).encode()


def put_change(kinesis: Any, stream: str, payload: bytes, keys: dict[str, Any]) -> str:
    """Put one change; the partition key is the item key, so one key stays in one shard.
    Returns the Kinesis sequence number."""
    partition_key = json.dumps(keys, sort_keys=True)
    answer = kinesis.put_record(StreamName=stream, Data=payload, PartitionKey=partition_key)
    return str(answer["SequenceNumber"])
