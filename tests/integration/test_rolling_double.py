"""The stream double's clock (issue 28): shards roll over every ``rollover_s`` and leave the
stream ``retention_s`` after they closed, as boto3 sees it over the wire."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from processor.testing.stream_double import Scenario, StreamDouble


def client(double: StreamDouble) -> Any:
    return boto3.client(
        "dynamodbstreams",
        endpoint_url=double.endpoint,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"max_attempts": 1}),
    )


def shards(streams: Any, double: StreamDouble) -> list[dict[str, Any]]:
    return list(streams.describe_stream(StreamArn=double.stream_arn)["StreamDescription"]["Shards"])


def test_shards_roll_over_on_the_clock_and_leave_after_the_retention() -> None:
    now = [0.0]
    scenario = Scenario.rolling(lineages=2, rollover_s=10.0, retention_s=25.0)
    with StreamDouble(scenario, clock=lambda: now[0]) as double:
        streams = client(double)
        first = double.write("k1")
        listed = shards(streams, double)
        assert len(listed) == 2
        assert all("EndingSequenceNumber" not in s["SequenceNumberRange"] for s in listed)

        now[0] = 10.0  # one rollover: both close, each opens a child
        listed = shards(streams, double)
        assert len(listed) == 4
        closed = {
            s["ShardId"] for s in listed if "EndingSequenceNumber" in s["SequenceNumberRange"]
        }
        children = [s for s in listed if s["ShardId"] not in closed]
        assert {c["ParentShardId"] for c in children} == closed
        second = double.write("k1")
        assert second > first  # a key's changes grow across generations

        now[0] = 34.9  # two more rollovers; the first generation closed 24.9 s ago
        assert len(shards(streams, double)) == 8
        now[0] = 35.0  # it has been closed 25 s: gone
        listed = shards(streams, double)
        assert len(listed) == 6
        assert closed.isdisjoint(s["ShardId"] for s in listed)
        assert len(double.departed) == 2
        with pytest.raises(ClientError) as gone:
            streams.get_shard_iterator(
                StreamArn=double.stream_arn,
                ShardId=sorted(closed)[0],
                ShardIteratorType="TRIM_HORIZON",
            )
        assert gone.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_a_key_always_writes_to_its_own_lineage_and_reads_back_in_order() -> None:
    now = [0.0]
    scenario = Scenario.rolling(lineages=3, rollover_s=1.0)
    with StreamDouble(scenario, clock=lambda: now[0]) as double:
        streams = client(double)
        written = []
        for step in range(4):
            now[0] = float(step)
            written += [double.write("k7"), double.write("k7")]
        read = []
        by_id = {s["ShardId"]: s for s in shards(streams, double)}
        for shard_id in sorted(by_id):  # shard ids sort in creation order
            iterator = streams.get_shard_iterator(
                StreamArn=double.stream_arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            page = streams.get_records(ShardIterator=iterator)
            read += [int(r["dynamodb"]["SequenceNumber"]) for r in page["Records"]]
        assert read == written
        lineages = {
            by_id[shard_id]["ShardId"][-8:]
            for shard_id in by_id
            if any(
                True
                for r in streams.get_records(
                    ShardIterator=streams.get_shard_iterator(
                        StreamArn=double.stream_arn,
                        ShardId=shard_id,
                        ShardIteratorType="TRIM_HORIZON",
                    )["ShardIterator"]
                )["Records"]
            )
        }
        assert len(lineages) == 1
