"""Helpers for tests (ours and users'): real local servers and record builders.

* :func:`moto_server` - an embedded DynamoDB + Streams + SQS endpoint on 127.0.0.1
  (needs the ``test`` extra: ``moto[server]``); :func:`moto_process` runs it in a process
  of its own (for measurements).
* :class:`WebhookReceiver` - a real HTTP server on 127.0.0.1 that records every request and
  answers with scripted statuses.
* :func:`make_record` - a stream record in DynamoDB JSON, as GetRecords returns it.
* :class:`MemoryLeaseStore` / :class:`MemorySource` - the lease store and the stream source in
  memory, for pure worker tests (each passes the contract suite of its seam).
* :class:`StreamDouble` / :class:`Scenario` - a DynamoDB Streams endpoint on 127.0.0.1 that
  does what moto cannot: splits, rollovers, expiring iterators, trimming, throttling.
"""

from __future__ import annotations

import itertools
from typing import Any

from processor.core.records import StreamRecord
from processor.leases.memory import MemoryLeaseStore
from processor.testing.capacity_proxy import CapacityModel, CapacityProxy, item_wcu
from processor.testing.kinesis import kds_payload, put_change
from processor.testing.kinesis_double import KinesisDouble, KinesisShard
from processor.testing.memory_source import MemorySource
from processor.testing.receiver import ReceivedRequest, WebhookReceiver, self_signed_certificate
from processor.testing.servers import dynamodb_local, moto_process, moto_server
from processor.testing.stream_double import Scenario, ShardSpec, StreamDouble
from processor.testing.throttling_proxy import ThrottlingProxy

__all__ = [
    "CapacityModel",
    "CapacityProxy",
    "KinesisDouble",
    "KinesisShard",
    "MemoryLeaseStore",
    "MemorySource",
    "ReceivedRequest",
    "Scenario",
    "ShardSpec",
    "StreamDouble",
    "ThrottlingProxy",
    "WebhookReceiver",
    "create_table",
    "dynamodb_local",
    "item_wcu",
    "kds_payload",
    "make_record",
    "moto_process",
    "moto_server",
    "put_change",
    "scan_all",
    "self_signed_certificate",
]


_sequence = itertools.count(100000000000000000000)


def make_record(
    keys: dict[str, Any],
    *,
    event_name: str = "INSERT",
    new_image: dict[str, Any] | None = None,
    old_image: dict[str, Any] | None = None,
    sequence_number: str | None = None,
    created: float = 1_700_000_000.0,
    event_id: str | None = None,
    shard_id: str | None = "shardId-test",
    ttl_delete: bool = False,
) -> StreamRecord:
    """A record in DynamoDB JSON. Images default from the event name (new for INSERT...)."""
    seq = sequence_number or str(next(_sequence))
    ddb: dict[str, Any] = {
        "ApproximateCreationDateTime": created,
        "Keys": keys,
        "SequenceNumber": seq,
        "SizeBytes": 100,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if new_image is None and event_name != "REMOVE":
        new_image = dict(keys)
    if new_image is not None:
        ddb["NewImage"] = new_image
    if old_image is not None:
        ddb["OldImage"] = old_image
    raw: dict[str, Any] = {
        "eventID": event_id or f"evt-{seq}",
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": ddb,
    }
    if ttl_delete:
        raw["userIdentity"] = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
    return StreamRecord.from_wire(raw, shard_id=shard_id)


def create_table(
    dynamodb: Any,
    name: str,
    *,
    keys: tuple[str, ...] = ("pk", "sk"),
    stream_view: str | None = "NEW_AND_OLD_IMAGES",
) -> str | None:
    """Create an on-demand table with string keys (hash, then range); return its stream ARN."""
    schema = [
        {"AttributeName": k, "KeyType": "HASH" if i == 0 else "RANGE"} for i, k in enumerate(keys)
    ]
    kwargs: dict[str, Any] = {
        "TableName": name,
        "KeySchema": schema,
        "AttributeDefinitions": [{"AttributeName": k, "AttributeType": "S"} for k in keys],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if stream_view:
        kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream_view}
    table = dynamodb.create_table(**kwargs)["TableDescription"]
    arn = table.get("LatestStreamArn")
    return str(arn) if arn else None


def scan_all(dynamodb: Any, name: str) -> list[dict[str, Any]]:
    """Every item of a table in DynamoDB JSON (follows pagination)."""
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": name, "ConsistentRead": True}
    while True:
        page = dynamodb.scan(**kwargs)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
