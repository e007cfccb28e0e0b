"""Building consumers the way the worker does, for tests."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import urllib3

from processor.aws import AwsClients, make_clients
from processor.core.consumer import ConsumerContext, StreamInfo
from processor.http import HttpPool


def clients(endpoint: str) -> AwsClients:
    return make_clients(
        region="us-east-1",
        endpoint_url=endpoint,
        retry_mode="standard",
        max_attempts=3,
        pool_size=10,
    )


def context(
    *,
    endpoint: str | None = None,
    table: str = "orders",
    view: str = "NEW_AND_OLD_IMAGES",
    http: urllib3.PoolManager | None = None,
    sleeps: list[float] | None = None,
    memory: dict[str, Any] | None = None,
    real_sleep: bool = False,
) -> ConsumerContext:
    """A consumer context; sleeps are recorded (and skipped unless ``real_sleep``)."""
    recorded = sleeps if sleeps is not None else []

    def sleep(seconds: float) -> None:
        recorded.append(seconds)
        if real_sleep:
            time.sleep(seconds)

    return ConsumerContext(
        route="test",
        config_key="routes.0",
        stream=StreamInfo(
            "arn:aws:dynamodb:us-east-1:1:table/orders/stream/x", table, view, ("pk", "sk")
        ),
        clients=clients(endpoint) if endpoint else None,
        http=http or HttpPool(maxsize=4, retries=False),
        memory_caches=memory if memory is not None else {},
        sleep=sleep,
        stop=threading.Event(),
    )


def stream_records(endpoint: str, table: str) -> list[dict[str, Any]]:
    """The stream as GetRecords answers it on the wire (boto3, no parsing of the body)."""
    ddb = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    streams = boto3.client("dynamodbstreams", endpoint_url=endpoint, region_name="us-east-1")
    arn = ddb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    raw: list[dict[str, Any]] = []

    def keep(response_dict: dict[str, Any], **_: Any) -> None:
        raw.extend(json.loads(response_dict["body"])["Records"])

    streams.meta.events.register("before-parse.dynamodbstreams.GetRecords", keep)
    while iterator:
        page = streams.get_records(ShardIterator=iterator, Limit=1000)
        if not page["Records"]:
            break
        iterator = page.get("NextShardIterator")
    return raw


def kinesis_config(
    tmp_path: Path, unique: str, name: str, routes: str, *, stream: str = ""
) -> Path:
    """dsp.toml for the Kinesis stream ``name`` (Kinesis pacing), with these routes."""
    config = tmp_path / "dsp.toml"
    config.write_text(
        f"""
[stream]
source = "kinesis"
kinesis_stream = "{name}"
poll_interval_min_s = 0.2
poll_interval_max_s = 0.4
{stream}
[checkpoints]
table = "leases-{unique}"
application = "kds-{unique}"
[dead_letter]
path = "{tmp_path / "dead-letter.jsonl"}"
{routes}
"""
    )
    return config
