"""The StreamSource contract: what the worker and reader rely on, for every source.

Each case runs on the in-memory source users' tests get (`processor.testing.MemorySource`) and
on the DynamoDB Streams adapter over the real boto3 client and wire API (the stream double),
so a test written against the memory source tells the truth about the real one.

The stream: a root shard split in two; one child closed (as after a further split), the other
open, as DynamoDB Streams shows a split.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from processor.sources.base import StreamSource
from processor.sources.dynamodb import StreamsAdapter
from processor.sources.lineage import Shard
from processor.testing import MemorySource, Scenario, ShardSpec, StreamDouble, make_record

ROOT, LEFT, RIGHT = (f"shardId-{i:020d}-0000000{i}" for i in range(3))
KEYS = {ROOT: ["k0", "k1", "k2"], LEFT: ["k0", "k2"], RIGHT: ["k1", "k1"]}
PARENT = {ROOT: None, LEFT: ROOT, RIGHT: ROOT}
CLOSED = {ROOT, LEFT}


@dataclass
class Stream:
    source: StreamSource
    arn: str
    append: Any  # (shard_id, key) -> None: a new change at an open shard's tip


def _memory() -> Iterator[Stream]:
    source = MemorySource()
    first = {ROOT: 100, LEFT: 200, RIGHT: 300}
    for shard_id, keys in KEYS.items():
        records = [
            make_record({"pk": {"S": key}}, sequence_number=str(first[shard_id] + i)).raw
            for i, key in enumerate(keys)
        ]
        ending = records[-1]["dynamodb"]["SequenceNumber"] if shard_id in CLOSED else None
        shard = Shard(shard_id, PARENT[shard_id], str(first[shard_id]), ending)
        source.add_shard(shard, records)
    counter = iter(range(400, 500))

    def append(shard_id: str, key: str) -> None:
        record = make_record({"pk": {"S": key}}, sequence_number=str(next(counter)))
        source.append(shard_id, record.raw)

    yield Stream(source, source.info.stream_arn, append)


def _dynamodb_streams() -> Iterator[Stream]:
    scenario = Scenario(
        [ShardSpec(s, PARENT[s], list(KEYS[s]), closed=s in CLOSED) for s in (ROOT, LEFT, RIGHT)]
    )
    with StreamDouble(scenario) as double:
        client = boto3.client(
            "dynamodbstreams",
            endpoint_url=double.endpoint,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
        )
        yield Stream(
            StreamsAdapter(client, describe_rate_per_s=1000.0),
            double.stream_arn,
            lambda shard_id, key: double.append(shard_id, [key]),
        )


@pytest.fixture(params=["memory", "dynamodb-streams"])
def stream(request: pytest.FixtureRequest) -> Iterator[Stream]:
    yield from (_memory() if request.param == "memory" else _dynamodb_streams())


def read_all(
    stream: Stream, shard_id: str, iterator: str, limit: int = 1
) -> tuple[list[Any], bool]:
    """Every record from the iterator on, and whether the shard ended (vs reached its tip)."""
    records: list[Any] = []
    next_iterator: str | None = iterator
    while next_iterator is not None:
        page = stream.source.get_records(next_iterator, limit=limit, shard_id=shard_id)
        assert len(page.records) <= limit
        records.extend(page.records)
        if not page.records and page.next_iterator is not None:
            return records, False
        next_iterator = page.next_iterator
    return records, True


def test_describe_lists_every_shard_with_its_lineage(stream: Stream) -> None:
    """Every shard, its parent, and closed-ness; the children of a shard; the table's key."""
    described = stream.source.describe(stream.arn)
    assert described.status == "ENABLED"
    assert described.info.key_attributes == ("pk",)
    got = {s.shard_id: (s.parent_shard_ids, s.is_closed) for s in described.shards}
    assert got == {s: ((PARENT[s],) if PARENT[s] else (), s in CLOSED) for s in KEYS}
    children = stream.source.child_shards(stream.arn, ROOT)
    assert sorted(c.shard_id for c in children) == [LEFT, RIGHT]
    assert stream.source.child_shards(stream.arn, LEFT) == []


def test_trim_horizon_reads_every_record_in_order_and_a_closed_shard_ends(stream: Stream) -> None:
    """Pages keep stream order and the limit; a closed shard ends, an open one waits at its tip."""
    for shard_id, keys in KEYS.items():
        iterator = stream.source.get_iterator(stream.arn, shard_id, "TRIM_HORIZON")
        records, ended = read_all(stream, shard_id, iterator)
        assert [r.keys["pk"] for r in records] == keys
        sequence = [int(r.sequence_number) for r in records]
        assert sequence == sorted(sequence)
        assert len(set(sequence)) == len(sequence)
        assert {r.shard_id for r in records} == {shard_id}
        assert ended == (shard_id in CLOSED)


def test_sequence_iterators_resume_at_and_after_a_record(stream: Stream) -> None:
    """AT_SEQUENCE_NUMBER starts with that record; AFTER_SEQUENCE_NUMBER with the next."""
    iterator = stream.source.get_iterator(stream.arn, ROOT, "TRIM_HORIZON")
    records, _ = read_all(stream, ROOT, iterator, limit=10)
    second = records[1].sequence_number
    at = stream.source.get_iterator(stream.arn, ROOT, "AT_SEQUENCE_NUMBER", second)
    after = stream.source.get_iterator(stream.arn, ROOT, "AFTER_SEQUENCE_NUMBER", second)
    assert [r.sequence_number for r in read_all(stream, ROOT, at)[0]] == [
        r.sequence_number for r in records[1:]
    ]
    assert [r.sequence_number for r in read_all(stream, ROOT, after)[0]] == [
        r.sequence_number for r in records[2:]
    ]


def test_latest_skips_what_is_there_and_sees_what_comes(stream: Stream) -> None:
    """LATEST on an open shard: nothing old, then the change written after it."""
    iterator = stream.source.get_iterator(stream.arn, RIGHT, "LATEST")
    page = stream.source.get_records(iterator, limit=10, shard_id=RIGHT)
    assert page.records == []
    assert page.next_iterator is not None
    stream.append(RIGHT, "k9")
    records, ended = read_all(stream, RIGHT, page.next_iterator)
    assert [r.keys["pk"] for r in records] == ["k9"]
    assert not ended


def test_retention_is_the_streams_24_hours(stream: Stream) -> None:
    """The hold and retry-forever bound comes from the source."""
    assert stream.source.retention_s == 24 * 3600
