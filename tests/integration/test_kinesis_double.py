"""The Kinesis double against references: moto where moto is faithful (the shapes boto3 parses
from PutRecord, ListShards, GetShardIterator, GetRecords, DescribeStreamSummary), Kinesis'
documented resharding where moto is not (SplitShard, MergeShards, a closed shard's end)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from processor.testing import KinesisDouble

pytestmark = pytest.mark.moto_only(reason="compares the double with moto's Kinesis")


def client(endpoint: str) -> Any:
    return boto3.client(
        "kinesis", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="x", aws_secret_access_key="x",
    )  # fmt: skip


@pytest.fixture
def double() -> Iterator[KinesisDouble]:
    with KinesisDouble() as server:
        yield server


def shape(value: Any) -> Any:
    """The keys and types of an answer, without its values."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items() if k != "ResponseMetadata"}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def session(kinesis: Any, name: str) -> dict[str, Any]:
    kinesis.create_stream(StreamName=name, ShardCount=2)
    put = kinesis.put_record(StreamName=name, Data=b'{"a": 1}', PartitionKey="k1")
    kinesis.put_records(
        StreamName=name, Records=[{"Data": b"x", "PartitionKey": f"k{i}"} for i in range(3)]
    )
    shards = kinesis.list_shards(StreamName=name)
    iterator = kinesis.get_shard_iterator(
        StreamName=name, ShardId=put["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )
    page = kinesis.get_records(ShardIterator=iterator["ShardIterator"], Limit=1)
    after = kinesis.get_shard_iterator(
        StreamName=name, ShardId=put["ShardId"],
        ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=put["SequenceNumber"],
    )  # fmt: skip
    rest = kinesis.get_records(ShardIterator=after["ShardIterator"])
    summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    return {"put": put, "shards": shards, "page": page, "rest": rest, "summary": summary}


def test_the_double_answers_boto3_in_the_shapes_moto_does(
    endpoint: str, double: KinesisDouble, unique: str
) -> None:
    theirs = session(client(endpoint), f"shapes-{unique}")
    ours = session(client(double.endpoint), "shapes")
    assert theirs["page"]["Records"][0]["Data"] == ours["page"]["Records"][0]["Data"] == b'{"a": 1}'
    assert ours["page"]["Records"][0]["SequenceNumber"] == ours["put"]["SequenceNumber"]
    assert [r["SequenceNumber"] for r in ours["rest"]["Records"]] > [ours["put"]["SequenceNumber"]]
    for part in ("put", "page", "rest"):
        mine, reference = shape(ours[part]), shape(theirs[part])
        assert set(reference) <= set(mine), (part, reference, mine)
        if reference.get("Records"):
            assert set(reference["Records"][0]) <= set(mine["Records"][0])
    shard_ours, shard_theirs = ours["shards"]["Shards"][0], theirs["shards"]["Shards"][0]
    assert set(shard_theirs) <= set(shard_ours)
    assert shard_theirs["HashKeyRange"] == shard_ours["HashKeyRange"]  # the same even split
    for key in ("StreamARN", "StreamStatus", "RetentionPeriodHours", "OpenShardCount"):
        assert type(ours["summary"][key]) is type(theirs["summary"][key]), key
    assert ours["summary"]["StreamStatus"] == theirs["summary"]["StreamStatus"] == "ACTIVE"


def test_a_split_closes_the_parent_which_keeps_its_records_and_ends_with_its_children(
    double: KinesisDouble,
) -> None:
    """Kinesis' SplitShard: the parent stops taking puts, keeps its records until they age
    out, and its last GetRecords has no NextShardIterator and names its ChildShards; puts
    go to the child whose hash key range holds the key; sequence numbers keep growing."""
    kinesis = client(double.endpoint)
    kinesis.create_stream(StreamName="s", ShardCount=1)
    before = kinesis.put_record(StreamName="s", Data=b"1", PartitionKey="k")
    kinesis.split_shard(
        StreamName="s", ShardToSplit=before["ShardId"], NewStartingHashKey=str(2**127)
    )
    after = kinesis.put_record(StreamName="s", Data=b"2", PartitionKey="k")
    assert after["ShardId"] != before["ShardId"]
    assert int(after["SequenceNumber"]) > int(before["SequenceNumber"])
    shards = {s["ShardId"]: s for s in kinesis.list_shards(StreamName="s")["Shards"]}
    parent = shards[before["ShardId"]]
    assert parent["SequenceNumberRange"]["EndingSequenceNumber"] == before["SequenceNumber"]
    assert shards[after["ShardId"]]["ParentShardId"] == before["ShardId"]
    iterator = kinesis.get_shard_iterator(
        StreamName="s", ShardId=before["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    page = kinesis.get_records(ShardIterator=iterator)
    assert [r["Data"] for r in page["Records"]] == [b"1"]
    assert "NextShardIterator" not in page
    assert sorted(c["ShardId"] for c in page["ChildShards"]) == sorted(
        s for s in shards if s != before["ShardId"]
    )


def test_a_merge_makes_one_child_with_two_parents(double: KinesisDouble) -> None:
    kinesis = client(double.endpoint)
    kinesis.create_stream(StreamName="m", ShardCount=2)
    low, high = (s["ShardId"] for s in kinesis.list_shards(StreamName="m")["Shards"])
    kinesis.merge_shards(StreamName="m", ShardToMerge=low, AdjacentShardToMerge=high)
    (child,) = [s for s in kinesis.list_shards(StreamName="m")["Shards"] if "ParentShardId" in s]
    assert (child["ParentShardId"], child["AdjacentParentShardId"]) == (low, high)
    assert child["HashKeyRange"] == {"StartingHashKey": "0", "EndingHashKey": str(2**128 - 1)}
    put = kinesis.put_record(StreamName="m", Data=b"x", PartitionKey="any")
    assert put["ShardId"] == child["ShardId"]
    with pytest.raises(kinesis.exceptions.ResourceInUseException):
        kinesis.merge_shards(StreamName="m", ShardToMerge=low, AdjacentShardToMerge=high)


def test_reads_past_the_shard_budget_are_throttled_as_kinesis_throttles_them() -> None:
    """Two reads a second: the third read in the same instant is throttled; a second later
    the budget is back."""
    now = [100.0]
    with KinesisDouble(reads_per_second=2, monotonic=lambda: now[0]) as double:
        kinesis = boto3.client(
            "kinesis", endpoint_url=double.endpoint, region_name="us-east-1",
            aws_access_key_id="x", aws_secret_access_key="x",
            config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
        )  # fmt: skip
        kinesis.create_stream(StreamName="t", ShardCount=1)
        shard = kinesis.list_shards(StreamName="t")["Shards"][0]["ShardId"]
        iterator = kinesis.get_shard_iterator(
            StreamName="t", ShardId=shard, ShardIteratorType="LATEST"
        )["ShardIterator"]
        iterator = kinesis.get_records(ShardIterator=iterator)["NextShardIterator"]
        iterator = kinesis.get_records(ShardIterator=iterator)["NextShardIterator"]
        with pytest.raises(kinesis.exceptions.ProvisionedThroughputExceededException):
            kinesis.get_records(ShardIterator=iterator)
        now[0] += 1.0
        assert "Records" in kinesis.get_records(ShardIterator=iterator)
        assert double.throttled == 1
