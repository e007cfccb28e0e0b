"""starting_position = "AT_TIMESTAMP" (issue 33, item 4): native on Kinesis, emulated on
DynamoDB Streams; only shards without a checkpoint start there. On main the setting was
refused ("Input should be 'TRIM_HORIZON' or 'LATEST'")."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from processor.app import build_app
from processor.core.consumer import RouteStats
from processor.core.routing import Route
from processor.settings import load_settings
from processor.testing import create_table, kds_payload, put_change
from tests.integration.helpers import kinesis_config
from tests.integration.test_kinesis_source import Seen

pytestmark = pytest.mark.moto_only(
    reason="needs second-precision creation times (DynamoDB Local rounds them to the minute) "
    "and moto's Kinesis"
)


def rfc3339(when: float) -> str:
    return datetime.fromtimestamp(when, tz=UTC).isoformat().replace("+00:00", "Z")


def run(config: Path, endpoint: str) -> Seen:
    settings = load_settings(config, environ={"DSP_AWS__ENDPOINT_URL": endpoint})
    seen = Seen()
    app = build_app(settings, routes=([Route("r", seen)], {"r": RouteStats()}))
    try:
        app.worker.run(stop=threading.Event(), stop_when_idle=1.0)
    finally:
        app.close()
    return seen


def test_dynamodb_streams_skips_what_was_made_before_the_time(
    tmp_path: Path, endpoint: str, dynamodb: Any, unique: str
) -> None:
    table = f"orders-{unique}"
    create_table(dynamodb, table)
    for i in range(3):
        dynamodb.put_item(TableName=table, Item={"pk": {"S": f"old{i}"}, "sk": {"S": "x"}})
    time.sleep(1.2)  # a different second: ApproximateCreationDateTime has second precision
    start = time.time()
    for i in range(3):
        dynamodb.put_item(TableName=table, Item={"pk": {"S": f"new{i}"}, "sk": {"S": "x"}})
    config = tmp_path / "dsp.toml"
    config.write_text(
        f"""
[stream]
table = "{table}"
starting_position = "AT_TIMESTAMP"
starting_timestamp = "{rfc3339(start)}"
poll_interval_min_s = 0.05
[checkpoints]
table = "leases-{unique}"
application = "at-{unique}"
[dead_letter]
path = "{tmp_path / "dl.jsonl"}"
[[routes]]
name = "r"
consumer = "tests.integration.test_kinesis_source:unused"
"""
    )
    seen = run(config, endpoint)
    assert sorted(r.keys["pk"] for r in seen.records) == ["new0", "new1", "new2"]
    # the shard has a checkpoint now: a later change is read after it, and nothing earlier
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "later"}, "sk": {"S": "x"}})
    again = run(config, endpoint)
    assert [r.keys["pk"] for r in again.records] == ["later"]


def test_kinesis_starts_each_shard_at_the_time_natively(
    tmp_path: Path, endpoint: str, dynamodb: Any, unique: str
) -> None:
    kinesis = boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1")
    table, name = f"orders-{unique}", f"orders-kds-{unique}"
    create_table(dynamodb, table)
    kinesis.create_stream(StreamName=name, ShardCount=2)

    def put(label: str) -> None:
        for i in range(4):
            keys = {"pk": {"S": f"{label}{i}"}, "sk": {"S": "x"}}
            put_change(kinesis, name, kds_payload(keys, new_image=keys, table=table), keys)

    put("old")
    time.sleep(1.2)
    start = time.time()
    time.sleep(0.05)
    put("new")
    config = kinesis_config(
        tmp_path, unique, name,
        '[[routes]]\nname = "r"\nconsumer = "tests.integration.test_kinesis_source:unused"\n',
        stream=f'table = "{table}"\nstarting_position = "AT_TIMESTAMP"\n'
        f"starting_timestamp = {start!r}",
    )  # fmt: skip
    seen = run(config, endpoint)
    assert sorted(r.keys["pk"] for r in seen.records) == [f"new{i}" for i in range(4)]
