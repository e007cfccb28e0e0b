"""The StreamSource contract: what the worker and reader rely on, for every source.

Each case runs on the in-memory source users' tests get (`processor.testing.MemorySource`),
on the DynamoDB Streams adapter over the real boto3 client and wire API (the stream double),
and on the Kinesis adapter over the real boto3 client and Kinesis' wire API (the Kinesis
double), so a test written against the memory source tells the truth about the real ones.

The stream: a root shard split in two; the left child split again (so it is closed, with two
open, empty children), the right child open.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from processor.core.consumer import StreamInfo
from processor.sources.base import StreamSource
from processor.sources.dynamodb import StreamsAdapter
from processor.sources.kinesis import KinesisSource
from processor.sources.lineage import Shard
from processor.testing import (
    KinesisDouble,
    MemorySource,
    Scenario,
    ShardSpec,
    StreamDouble,
    kds_payload,
    make_record,
)

ROOT, LEFT, RIGHT, LEFT_LOW, LEFT_HIGH = "root", "left", "right", "left-low", "left-high"
KEYS = {
    ROOT: ["k0", "k1", "k2"],
    LEFT: ["k0", "k2"],
    RIGHT: ["k1", "k1"],
    LEFT_LOW: [],
    LEFT_HIGH: [],
}
PARENT = {ROOT: None, LEFT: ROOT, RIGHT: ROOT, LEFT_LOW: LEFT, LEFT_HIGH: LEFT}
CLOSED = {ROOT, LEFT}


@dataclass
class Stream:
    source: StreamSource
    arn: str
    append: Callable[[str, str], None]  # (shard, key): a new change at an open shard's tip
    ids: dict[str, str]  # the tree's shard names -> this source's shard ids

    def id(self, name: str) -> str:
        return self.ids[name]


def _memory() -> Iterator[Stream]:
    source = MemorySource()
    first = {ROOT: 100, LEFT: 200, RIGHT: 300, LEFT_LOW: 400, LEFT_HIGH: 500}
    for shard_id, keys in KEYS.items():
        records = [
            make_record({"pk": {"S": key}}, sequence_number=str(first[shard_id] + i)).raw
            for i, key in enumerate(keys)
        ]
        ending = records[-1]["dynamodb"]["SequenceNumber"] if shard_id in CLOSED else None
        shard = Shard(shard_id, PARENT[shard_id], str(first[shard_id]), ending)
        source.add_shard(shard, records)
    counter = iter(range(600, 700))

    def append(shard_id: str, key: str) -> None:
        record = make_record({"pk": {"S": key}}, sequence_number=str(next(counter)))
        source.append(shard_id, record.raw)

    yield Stream(source, source.info.stream_arn, append, {s: s for s in KEYS})


def _dynamodb_streams() -> Iterator[Stream]:
    names = {s: f"shardId-{i:020d}-0000000{i}" for i, s in enumerate(KEYS)}
    scenario = Scenario(
        [
            ShardSpec(names[s], names.get(PARENT[s] or ""), list(KEYS[s]), closed=s in CLOSED)
            for s in KEYS
        ]
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
            lambda shard, key: double.append(names[shard], [key]),
            names,
        )


def _kinesis() -> Iterator[Stream]:
    """The same tree made as Kinesis makes it: puts, then SplitShard twice."""
    with KinesisDouble() as double:
        arn = double.create_stream("contract", shards=1)
        names = {ROOT: "shardId-000000000000"}
        low, high = "1", str(2**127 + 1)  # explicit hash keys: one per half of the space

        def put(key: str, hash_key: str) -> None:
            keys = {"pk": {"S": key}}
            double.put("contract", key, kds_payload(keys), explicit_hash_key=hash_key)

        for key in KEYS[ROOT]:
            put(key, low)
        names[LEFT], names[RIGHT] = double.split("contract", names[ROOT])
        for key in KEYS[LEFT]:
            put(key, low)
        for key in KEYS[RIGHT]:
            put(key, high)
        names[LEFT_LOW], names[LEFT_HIGH] = double.split("contract", names[LEFT])
        client = boto3.client(
            "kinesis",
            endpoint_url=double.endpoint,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
        )
        info = StreamInfo(arn, "orders", "NEW_AND_OLD_IMAGES", ("pk",))
        yield Stream(
            KinesisSource(client, info=info),
            arn,
            lambda shard, key: put(key, high if shard == RIGHT else low),
            names,
        )


SOURCES = {"memory": _memory, "dynamodb-streams": _dynamodb_streams, "kinesis": _kinesis}


@pytest.fixture(params=list(SOURCES))
def stream(request: pytest.FixtureRequest) -> Iterator[Stream]:
    yield from SOURCES[request.param]()


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
    assert described.status in ("ENABLED", "ACTIVE")  # DynamoDB Streams', Kinesis' word
    assert described.info.key_attributes == ("pk",)
    names = {v: k for k, v in stream.ids.items()}
    got = {
        names[s.shard_id]: (tuple(names[p] for p in s.parent_shard_ids), s.is_closed)
        for s in described.shards
    }
    assert got == {s: ((PARENT[s],) if PARENT[s] else (), s in CLOSED) for s in KEYS}
    children = stream.source.child_shards(stream.arn, stream.id(ROOT))
    assert sorted(names[c.shard_id] for c in children) == sorted([LEFT, RIGHT])
    children = stream.source.child_shards(stream.arn, stream.id(LEFT))
    assert sorted(names[c.shard_id] for c in children) == sorted([LEFT_LOW, LEFT_HIGH])
    assert stream.source.child_shards(stream.arn, stream.id(RIGHT)) == []


def test_trim_horizon_reads_every_record_in_order_and_a_closed_shard_ends(stream: Stream) -> None:
    """Pages keep stream order and the limit; a closed shard ends, an open one waits at its tip."""
    for name, keys in KEYS.items():
        shard_id = stream.id(name)
        iterator = stream.source.get_iterator(stream.arn, shard_id, "TRIM_HORIZON")
        records, ended = read_all(stream, shard_id, iterator)
        assert [r.keys["pk"] for r in records] == keys
        sequence = [int(r.sequence_number) for r in records]
        assert sequence == sorted(sequence)
        assert len(set(sequence)) == len(sequence)
        assert {r.shard_id for r in records} <= {shard_id}
        assert ended == (name in CLOSED)


def test_a_childs_records_come_after_its_parents_in_sequence_order(stream: Stream) -> None:
    """Sequence numbers grow down a lineage: a key's change in a child follows its parent's."""
    last = {}
    for name in KEYS:
        iterator = stream.source.get_iterator(stream.arn, stream.id(name), "TRIM_HORIZON")
        records, _ = read_all(stream, stream.id(name), iterator, limit=10)
        last[name] = [int(r.sequence_number) for r in records]
    assert max(last[ROOT]) < min(last[LEFT])
    assert max(last[ROOT]) < min(last[RIGHT])


def test_sequence_iterators_resume_at_and_after_a_record(stream: Stream) -> None:
    """AT_SEQUENCE_NUMBER starts with that record; AFTER_SEQUENCE_NUMBER with the next."""
    root = stream.id(ROOT)
    iterator = stream.source.get_iterator(stream.arn, root, "TRIM_HORIZON")
    records, _ = read_all(stream, root, iterator, limit=10)
    second = records[1].sequence_number
    at = stream.source.get_iterator(stream.arn, root, "AT_SEQUENCE_NUMBER", second)
    after = stream.source.get_iterator(stream.arn, root, "AFTER_SEQUENCE_NUMBER", second)
    assert [r.sequence_number for r in read_all(stream, root, at)[0]] == [
        r.sequence_number for r in records[1:]
    ]
    assert [r.sequence_number for r in read_all(stream, root, after)[0]] == [
        r.sequence_number for r in records[2:]
    ]


def test_latest_skips_what_is_there_and_sees_what_comes(stream: Stream) -> None:
    """LATEST on an open shard: nothing old, then the change written after it."""
    right = stream.id(RIGHT)
    iterator = stream.source.get_iterator(stream.arn, right, "LATEST")
    page = stream.source.get_records(iterator, limit=10, shard_id=right)
    assert page.records == []
    assert page.next_iterator is not None
    stream.append(RIGHT, "k9")
    records, ended = read_all(stream, right, page.next_iterator)
    assert [r.keys["pk"] for r in records] == ["k9"]
    assert not ended


def test_retention_is_the_streams_24_hours(stream: Stream) -> None:
    """The hold and retry-forever bound comes from the source (both default to 24 hours)."""
    stream.source.describe(stream.arn)
    assert stream.source.retention_s == 24 * 3600
