"""Several sources on one boto3 client, as `[[streams]]` builds them (one client per
process, an adapter per stream): each adapter still reads its own stream's records. The
adapters take GetRecords bodies out of botocore's parser with a hook on the client; a hook
registered once per adapter ran twice, and the second run replaced the body with the empty
one the first left (a page without records or NextShardIterator: the shard looked ended)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from processor.sources.dynamodb import StreamsAdapter
from processor.sources.kinesis import KinesisSource
from processor.testing import create_table, kds_payload, put_change


def _client(service: str, endpoint: str) -> Any:
    """A client as the suite's fixtures make them (DynamoDB Local keeps each access key's
    tables apart: the same credentials as the ``dynamodb`` fixture)."""
    make: Any = boto3.client  # typed per service name; ours is a variable
    return make(service, endpoint_url=endpoint, region_name="us-east-1")


def test_two_dynamodb_streams_adapters_on_one_client_each_read_their_records(
    endpoint: str, dynamodb: Any, unique: str
) -> None:
    streams = _client("dynamodbstreams", endpoint)
    arns = {}
    for name in ("orders", "customers"):
        table = f"{name}-{unique}"
        arns[name] = create_table(dynamodb, table, keys=("pk",))
        dynamodb.put_item(TableName=table, Item={"pk": {"S": name}})
    adapters = {name: StreamsAdapter(streams, describe_rate_per_s=10) for name in arns}
    for name, adapter in adapters.items():
        arn = arns[name]
        assert arn is not None
        (shard,) = adapter.describe(arn).shards
        iterator = adapter.get_iterator(arn, shard.shard_id, "TRIM_HORIZON")
        page = adapter.get_records(iterator, limit=100, shard_id=shard.shard_id)
        assert [r.keys["pk"] for r in page.records] == [name]
        assert page.next_iterator is not None  # an open shard: not ended


@pytest.mark.moto_only(reason="Kinesis: moto serves it, DynamoDB Local does not")
def test_two_kinesis_sources_on_one_client_each_read_their_records(
    endpoint: str, unique: str
) -> None:
    kinesis = _client("kinesis", endpoint)
    arns = {}
    for name in ("orders", "payments"):
        stream = f"{name}-{unique}"
        kinesis.create_stream(StreamName=stream, ShardCount=1)
        keys = {"pk": {"S": name}}
        put_change(kinesis, stream, kds_payload(keys, table=name), keys)
        summary = kinesis.describe_stream_summary(StreamName=stream)
        arns[name] = summary["StreamDescriptionSummary"]["StreamARN"]
    sources = {name: KinesisSource(kinesis) for name in arns}
    for name, source in sources.items():
        (shard,) = source.describe(arns[name]).shards
        iterator = source.get_iterator(arns[name], shard.shard_id, "TRIM_HORIZON")
        page = source.get_records(iterator, limit=100, shard_id=shard.shard_id)
        assert [r.keys["pk"] for r in page.records] == [name]
        assert page.next_iterator is not None
