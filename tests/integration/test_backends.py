"""Where moto and DynamoDB Local differ (docs/dynamodb-local.md), shown on the backend in use."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from processor.errors import ConfigError
from processor.settings import load_settings
from processor.testing import create_table
from tests.conftest import BACKEND


def first_record(endpoint: str, dynamodb: Any, table: str) -> dict[str, Any]:
    streams = boto3.client("dynamodbstreams", endpoint_url=endpoint, region_name="us-east-1")
    arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    (shard, *_) = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    iterator = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    (record, *_) = streams.get_records(ShardIterator=iterator)["Records"]
    return dict(record)


def test_creation_times_are_whole_minutes_on_dynamodb_local(
    endpoint: str, dynamodb: Any, unique: str
) -> None:
    """DynamoDB Local rounds ApproximateCreationDateTime down to the minute; moto does not
    round (and AWS rounds to the second). Replays from a time must allow for the source's
    granularity."""
    table = f"times-{unique}"
    create_table(dynamodb, table)
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "a"}, "sk": {"S": "1"}})
    created: datetime = first_record(endpoint, dynamodb, table)["dynamodb"][
        "ApproximateCreationDateTime"
    ]
    if BACKEND == "dynamodb-local":
        assert (created.second, created.microsecond) == (0, 0)
    else:
        assert created.microsecond != 0 or created.second != 0


def test_short_table_names_are_refused_by_dynamodb_and_by_our_configuration(
    dynamodb: Any,
) -> None:
    """DynamoDB Local refuses table names under 3 characters, as DynamoDB does; moto accepts
    them. Our configuration refuses them at start, whatever the backend."""
    if BACKEND == "dynamodb-local":
        with pytest.raises(ClientError, match="ValidationException"):
            create_table(dynamodb, "ab", stream_view=None)
    else:
        create_table(dynamodb, "ab", stream_view=None)
    with pytest.raises(ConfigError, match=r"stream\.table"):
        load_settings(
            None,
            environ={},
            overrides={
                "stream": {"table": "ab"},
                "checkpoints": {"application": "a"},
                "routes": [{"name": "r", "consumer": "cache", "options": {"keys": ["k:{pk}"]}}],
            },
        )
