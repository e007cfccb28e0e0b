"""A Kinesis Data Streams double: a real HTTP server on 127.0.0.1 speaking Kinesis' JSON wire
protocol (``Kinesis_20131202``) to the real boto3 client.

moto serves Kinesis, but its resharding is not Kinesis': after a split or merge its puts still
land in the closed parent (its hash range still covers them), a split moves the parent's
records, and a closed shard never ends through GetRecords. This double reshards as Kinesis
documents it (SplitShard, MergeShards, UpdateShardCount's uniform scaling):

- a closed parent keeps its records, gets an ``EndingSequenceNumber``, and is read to its end,
  where GetRecords answers without ``NextShardIterator`` and with ``ChildShards``;
- puts route by the MD5 of the partition key (or ``ExplicitHashKey``) to the open shard whose
  hash key range holds it, so a key's changes move to the child from then on;
- sequence numbers grow across the stream, so a key's changes in a parent come before its
  changes in a child.

It also answers ``AT_TIMESTAMP`` iterators (by arrival time), ``MillisBehindLatest``, iterators
that expire after N uses, trimming, and ``ProvisionedThroughputExceededException`` every k-th
read or past a per-shard reads-per-second limit (Kinesis allows 5), with AWS-shaped errors::

    with KinesisDouble() as double:
        double.create_stream("orders-kds", shards=2)
        kinesis = boto3.client("kinesis", endpoint_url=double.endpoint, ...)
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from processor.testing._local_server import AwsError, LocalJsonServer, Served

__all__ = ["KinesisDouble", "KinesisShard"]

ACCOUNT = "123456789012"
REGION = "us-east-1"
_HASH_MAX = 2**128 - 1
_FIRST_SEQUENCE = 49_650_000_000_000_000_000_000_000_000_000_000_000_000_000_000_000


@dataclass
class _Record:
    sequence: int
    partition_key: str
    data: bytes
    arrival: float


@dataclass
class KinesisShard:
    """One shard: its hash key range, parents, records and, once closed, its end."""

    shard_id: str
    starting_hash: int
    ending_hash: int
    starting_sequence: int
    parent: str | None = None
    adjacent_parent: str | None = None
    records: list[_Record] = field(default_factory=list)
    ending_sequence: int | None = None  # set when split or merged
    trimmed: int = 0  # records before this index are gone
    closed_at: float | None = None  # when it was split or merged (the double's clock)

    @property
    def open(self) -> bool:
        return self.ending_sequence is None

    def covers(self, hash_key: int) -> bool:
        return self.starting_hash <= hash_key <= self.ending_hash

    def to_json(self) -> dict[str, Any]:
        seq: dict[str, str] = {"StartingSequenceNumber": str(self.starting_sequence)}
        if self.ending_sequence is not None:
            seq["EndingSequenceNumber"] = str(self.ending_sequence)
        out: dict[str, Any] = {
            "ShardId": self.shard_id,
            "HashKeyRange": {
                "StartingHashKey": str(self.starting_hash),
                "EndingHashKey": str(self.ending_hash),
            },
            "SequenceNumberRange": seq,
        }
        if self.parent:
            out["ParentShardId"] = self.parent
        if self.adjacent_parent:
            out["AdjacentParentShardId"] = self.adjacent_parent
        return out


@dataclass
class _Stream:
    name: str
    arn: str
    created: float
    retention_hours: int = 24
    shards: dict[str, KinesisShard] = field(default_factory=dict)
    next_id: int = 0
    #: resharding on the clock (:meth:`KinesisDouble.reshard_every`): how often, when next,
    #: the shard count to split from and merge back to, and how long a closed shard stays
    reshard_s: float | None = None
    reshards: int = 0
    next_reshard: float = 0.0
    base_shards: int = 0
    retention_s: float | None = None
    #: shards that left the stream (past ``retention_s``), oldest first
    departed: list[KinesisShard] = field(default_factory=list)


@dataclass
class _Iterator:
    stream: str
    shard_id: str
    position: int  # index of the next record
    hops: int = 0


def hash_key_of(partition_key: str) -> int:
    """Kinesis' mapping of a partition key to the 128-bit hash key space."""
    return int(hashlib.md5(partition_key.encode()).hexdigest(), 16)  # noqa: S324 - as Kinesis


class KinesisDouble(Served):
    """Serve Kinesis streams at ``endpoint`` until closed (use as a context manager)."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        expire_after_calls: int | None = None,
        throttle_every: int | None = None,
        reads_per_second: int | None = None,
        max_list_shards: int = 1000,
    ) -> None:
        self.clock = clock  # arrival times (AT_TIMESTAMP, MillisBehindLatest)
        self.monotonic = monotonic  # the read budget's refill
        #: an iterator chain expires after N GetRecords (Kinesis: after 5 minutes)
        self.expire_after_calls = expire_after_calls
        #: every k-th GetRecords answers ProvisionedThroughputExceededException
        self.throttle_every = throttle_every
        #: per-shard GetRecords limit per second (Kinesis: 5); None: unlimited
        self.reads_per_second = reads_per_second
        self.max_list_shards = max_list_shards
        self.calls: Counter[str] = Counter()
        self.throttled = 0
        #: the sequence numbers GetRecords handed out, in order
        self.served: list[str] = []
        self._streams: dict[str, _Stream] = {}
        self._iterators: dict[str, _Iterator] = {}
        self._reads: dict[str, tuple[float, float]] = {}  # shard -> (tokens, when)
        self._sequences = itertools.count(_FIRST_SEQUENCE, 17)
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._server = LocalJsonServer(self._answer)

    # -- controls (also reachable through the wire API) -----------------------------------------

    def create_stream(self, name: str, *, shards: int = 1, retention_hours: int = 24) -> str:
        """A stream of ``shards`` shards splitting the hash key space evenly; its ARN."""
        with self._lock:
            arn = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{name}"
            stream = _Stream(name, arn, self.clock(), retention_hours)
            step = (_HASH_MAX + 1) // shards
            for i in range(shards):
                end = _HASH_MAX if i == shards - 1 else (i + 1) * step - 1
                self._new_shard(stream, i * step, end)
            self._streams[name] = stream
            return arn

    def shards(self, name: str) -> list[KinesisShard]:
        with self._lock:
            return list(self._streams[name].shards.values())

    def open_shards(self, name: str) -> list[KinesisShard]:
        return [s for s in self.shards(name) if s.open]

    def put(
        self, name: str, partition_key: str, data: bytes, explicit_hash_key: str | None = None
    ) -> tuple[str, str]:
        """Put one record; (shard id, sequence number)."""
        with self._lock:
            stream = self._streams[name]
            self._advance(stream)
            hash_key = int(explicit_hash_key) if explicit_hash_key else hash_key_of(partition_key)
            shard = next(s for s in stream.shards.values() if s.open and s.covers(hash_key))
            sequence = next(self._sequences)
            shard.records.append(_Record(sequence, partition_key, data, self.clock()))
            return shard.shard_id, str(sequence)

    def split(
        self, name: str, shard_id: str, new_starting_hash_key: int | None = None
    ) -> tuple[str, str]:
        """SplitShard: close ``shard_id``; two children share its hash key range (halved by
        default). Returns the children's ids."""
        with self._lock:
            stream = self._streams[name]
            parent = self._open_shard(stream, shard_id)
            middle = (
                new_starting_hash_key
                if new_starting_hash_key is not None
                else (parent.starting_hash + parent.ending_hash + 1) // 2
            )
            if not parent.starting_hash < middle <= parent.ending_hash:
                raise AwsError(
                    "InvalidArgumentException",
                    f"NewStartingHashKey {middle} is outside the hash key range of {shard_id}",
                )
            self._close(parent)
            low = self._new_shard(stream, parent.starting_hash, middle - 1, parent=shard_id)
            high = self._new_shard(stream, middle, parent.ending_hash, parent=shard_id)
            return low.shard_id, high.shard_id

    def merge(self, name: str, shard_id: str, adjacent_shard_id: str) -> str:
        """MergeShards: close two adjacent shards; one child covers both ranges."""
        with self._lock:
            stream = self._streams[name]
            first = self._open_shard(stream, shard_id)
            second = self._open_shard(stream, adjacent_shard_id)
            low, high = sorted((first, second), key=lambda s: s.starting_hash)
            if low.ending_hash + 1 != high.starting_hash:
                raise AwsError(
                    "InvalidArgumentException",
                    f"Shards {shard_id} and {adjacent_shard_id} are not adjacent",
                )
            self._close(first)
            self._close(second)
            child = self._new_shard(
                stream, low.starting_hash, high.ending_hash,
                parent=shard_id, adjacent_parent=adjacent_shard_id,
            )  # fmt: skip
            return child.shard_id

    def reshard_every(self, name: str, every_s: float, *, retention_s: float | None = None) -> None:
        """Reshard on the clock, as a stream scaled on demand for months: every ``every_s``
        each open shard splits in two, and the next time adjacent pairs merge back (two
        parents), and so on; a shard closed ``retention_s`` ago leaves ListShards (and
        GetShardIterator answers ResourceNotFoundException for it)."""
        with self._lock:
            stream = self._streams[name]
            stream.reshard_s, stream.retention_s = every_s, retention_s
            stream.next_reshard = self.clock() + every_s
            stream.base_shards = len([s for s in stream.shards.values() if s.open])

    def departed(self, name: str) -> list[KinesisShard]:
        """Shards that left the stream (past the retention), oldest first."""
        with self._lock:
            self._advance(self._streams[name])
            return list(self._streams[name].departed)

    def generations(self, name: str) -> int:
        """How many reshards the clock made so far."""
        with self._lock:
            self._advance(self._streams[name])
            return self._streams[name].reshards

    def _advance(self, stream: _Stream) -> None:
        """Reshard and forget what the clock says is due (under the lock)."""
        now = self.clock()
        while stream.reshard_s is not None and now >= stream.next_reshard:
            at = stream.next_reshard
            open_shards = sorted(
                (s for s in stream.shards.values() if s.open), key=lambda s: s.starting_hash
            )
            if len(open_shards) <= stream.base_shards:
                for shard in open_shards:
                    self.split(stream.name, shard.shard_id)
            else:
                for low, high in zip(open_shards[::2], open_shards[1::2], strict=False):
                    self.merge(stream.name, low.shard_id, high.shard_id)
            for shard in stream.shards.values():
                if not shard.open and shard.closed_at is None:
                    shard.closed_at = at
            stream.next_reshard += stream.reshard_s
            stream.reshards += 1
        if stream.retention_s is not None:
            for shard_id, shard in list(stream.shards.items()):
                if shard.closed_at is not None and now - shard.closed_at >= stream.retention_s:
                    stream.departed.append(stream.shards.pop(shard_id))

    def trim(self, name: str, shard_id: str, first_kept_index: int) -> None:
        """Move a shard's trim horizon: its records before the index are gone."""
        with self._lock:
            self._streams[name].shards[shard_id].trimmed = first_kept_index

    # -- internals ------------------------------------------------------------------------------

    def _new_shard(
        self,
        stream: _Stream,
        start: int,
        end: int,
        *,
        parent: str | None = None,
        adjacent_parent: str | None = None,
    ) -> KinesisShard:
        shard_id = f"shardId-{stream.next_id:012d}"
        stream.next_id += 1
        shard = KinesisShard(shard_id, start, end, next(self._sequences), parent, adjacent_parent)
        stream.shards[shard_id] = shard
        return shard

    def _close(self, shard: KinesisShard) -> None:
        shard.ending_sequence = (
            shard.records[-1].sequence if shard.records else next(self._sequences)
        )

    def _open_shard(self, stream: _Stream, shard_id: str) -> KinesisShard:
        shard = self._shard(stream, shard_id)
        if not shard.open:
            raise AwsError(
                "ResourceInUseException",
                f"Shard {shard_id} in stream {stream.name} has already been merged or split",
            )
        return shard

    def _shard(self, stream: _Stream, shard_id: str) -> KinesisShard:
        shard = stream.shards.get(shard_id)
        if shard is None:
            raise AwsError(
                "ResourceNotFoundException",
                f"Shard {shard_id} in stream {stream.name} under account {ACCOUNT} does not exist",
            )
        return shard

    def _answer(
        self, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        operation = target.rpartition(".")[2]
        with self._lock:
            self.calls[operation] += 1
            for stream in self._streams.values():
                self._advance(stream)
            try:
                handler = self._handlers().get(operation)
                if handler is None:
                    raise AwsError(  # noqa: TRY301 - answered below like every AWS error
                        "UnknownOperationException", f"unknown operation {operation}"
                    )
                status, answer = 200, handler(json.loads(body or b"{}"))
            except AwsError as exc:
                status, answer = exc.status, {"__type": exc.code, "message": str(exc)}
        return (
            status,
            {
                "Content-Type": "application/x-amz-json-1.1",
                "x-amzn-RequestId": f"kinesis-double-{next(self._ids)}",
            },
            json.dumps(answer).encode(),
        )

    def _handlers(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        return {
            "CreateStream": self._wire_create_stream,
            "DescribeStreamSummary": self._describe_stream_summary,
            "ListShards": self._list_shards,
            "GetShardIterator": self._get_shard_iterator,
            "GetRecords": self._get_records,
            "PutRecord": self._put_record,
            "PutRecords": self._put_records,
            "SplitShard": self._split_shard,
            "MergeShards": self._merge_shards,
            "UpdateShardCount": self._update_shard_count,
        }

    def _stream(self, body: dict[str, Any]) -> _Stream:
        name = body.get("StreamName") or str(body.get("StreamARN", "")).rpartition("/")[2]
        stream = self._streams.get(name)
        if stream is None or (body.get("StreamARN") and body["StreamARN"] != stream.arn):
            raise AwsError(
                "ResourceNotFoundException",
                f"Stream {name} under account {ACCOUNT} not found.",
            )
        return stream

    def _wire_create_stream(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("StreamName") in self._streams:
            raise AwsError("ResourceInUseException", f"Stream {body['StreamName']} exists")
        self.create_stream(str(body["StreamName"]), shards=int(body.get("ShardCount", 1)))
        return {}

    def _describe_stream_summary(self, body: dict[str, Any]) -> dict[str, Any]:
        stream = self._stream(body)
        return {
            "StreamDescriptionSummary": {
                "StreamName": stream.name,
                "StreamARN": stream.arn,
                "StreamStatus": "ACTIVE",
                "StreamModeDetails": {"StreamMode": "PROVISIONED"},
                "RetentionPeriodHours": stream.retention_hours,
                "StreamCreationTimestamp": stream.created,
                "EnhancedMonitoring": [{"ShardLevelMetrics": []}],
                "EncryptionType": "NONE",
                "OpenShardCount": sum(s.open for s in stream.shards.values()),
                "ConsumerCount": 0,
            }
        }

    def _list_shards(self, body: dict[str, Any]) -> dict[str, Any]:
        token = body.get("NextToken")
        if token:
            if body.get("StreamName") or body.get("StreamARN"):
                raise AwsError(
                    "InvalidArgumentException",
                    "NextToken and StreamName cannot be provided together.",
                )
            name, _, start = str(token).partition("|")
            stream, offset = self._stream({"StreamName": name}), int(start)
        else:
            stream, offset = self._stream(body), 0
        limit = min(int(body.get("MaxResults", self.max_list_shards)), self.max_list_shards)
        shards = list(stream.shards.values())
        answer: dict[str, Any] = {"Shards": [s.to_json() for s in shards[offset : offset + limit]]}
        if offset + limit < len(shards):
            answer["NextToken"] = f"{stream.name}|{offset + limit}"
        return answer

    def _get_shard_iterator(self, body: dict[str, Any]) -> dict[str, Any]:
        stream = self._stream(body)
        shard = self._shard(stream, str(body.get("ShardId", "")))
        kind = body.get("ShardIteratorType")
        sequences = [r.sequence for r in shard.records]
        if kind == "TRIM_HORIZON":
            position = shard.trimmed
        elif kind == "LATEST":
            position = len(shard.records)
        elif kind in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
            sequence = int(body.get("StartingSequenceNumber", "0"))
            last = shard.ending_sequence or (
                sequences[-1] if sequences else shard.starting_sequence
            )
            if not shard.starting_sequence <= sequence <= max(last, shard.starting_sequence):
                raise AwsError(
                    "InvalidArgumentException",
                    f"StartingSequenceNumber {sequence} used in GetShardIterator on shard "
                    f"{shard.shard_id} in stream {stream.name} under account {ACCOUNT} is "
                    "invalid because it did not come from this stream.",
                )
            position = bisect.bisect_left(sequences, sequence)
            if kind == "AFTER_SEQUENCE_NUMBER" and position < len(sequences):
                position += sequences[position] == sequence
            if position < shard.trimmed:  # as consumers observe Kinesis answer a lost start
                raise AwsError(
                    "InvalidArgumentException",
                    f"StartingSequenceNumber {sequence} used in GetShardIterator on shard "
                    f"{shard.shard_id} in stream {stream.name} under account {ACCOUNT} is "
                    "invalid because the record is beyond the stream's retention period.",
                )
        elif kind == "AT_TIMESTAMP":
            when = float(body.get("Timestamp", 0))
            arrivals = [r.arrival for r in shard.records]
            position = max(bisect.bisect_left(arrivals, when), shard.trimmed)
        else:
            raise AwsError("InvalidArgumentException", f"invalid ShardIteratorType {kind}")
        return {"ShardIterator": self._issue(stream.name, shard.shard_id, position)}

    def _issue(self, stream: str, shard_id: str, position: int, hops: int = 0) -> str:
        token = base64.b64encode(f"{stream}|{shard_id}|{next(self._ids)}".encode()).decode()
        self._iterators[token] = _Iterator(stream, shard_id, position, hops)
        return token

    def _throttle(self, shard_id: str) -> None:
        """Every k-th read, or past the shard's read budget: a token bucket holding up to
        ``reads_per_second`` reads, refilled at that rate (bursts pass, sustained excess not)."""
        n = self.calls["GetRecords"]
        over = self.throttle_every is not None and n % self.throttle_every == 0
        if self.reads_per_second is not None and not over:
            now = self.monotonic()
            tokens, then = self._reads.get(shard_id, (float(self.reads_per_second), now))
            tokens = min(
                float(self.reads_per_second), tokens + (now - then) * self.reads_per_second
            )
            over = tokens < 1.0
            self._reads[shard_id] = (tokens if over else tokens - 1.0, now)
        if over:
            self.throttled += 1
            raise AwsError(
                "ProvisionedThroughputExceededException",
                f"Rate exceeded for shard {shard_id} in stream under account {ACCOUNT}.",
            )

    def _get_records(self, body: dict[str, Any]) -> dict[str, Any]:
        token = str(body.get("ShardIterator", ""))
        iterator = self._iterators.get(token)
        if iterator is None:
            raise AwsError("InvalidArgumentException", "Invalid ShardIterator.")
        if self.expire_after_calls is not None and iterator.hops >= self.expire_after_calls:
            raise AwsError(
                "ExpiredIteratorException",
                f"Iterator expired. The iterator was created at time {self.clock()} while "
                "right now it is later; iterators are valid for 300000 ms.",
            )
        self._throttle(iterator.shard_id)
        stream = self._streams[iterator.stream]
        shard = stream.shards[iterator.shard_id]
        start = max(iterator.position, shard.trimmed)
        limit = min(int(body.get("Limit", 10_000)), 10_000)
        end = min(start + limit, len(shard.records))
        page = shard.records[start:end]
        self.served.extend(str(r.sequence) for r in page)
        del self._iterators[token]
        answer: dict[str, Any] = {
            "Records": [
                {
                    "SequenceNumber": str(r.sequence),
                    "ApproximateArrivalTimestamp": r.arrival,
                    "Data": base64.b64encode(r.data).decode(),
                    "PartitionKey": r.partition_key,
                }
                for r in page
            ],
            "MillisBehindLatest": (
                max(int((self.clock() - shard.records[end].arrival) * 1000), 0)
                if end < len(shard.records)
                else 0
            ),
        }
        if shard.open or end < len(shard.records):
            answer["NextShardIterator"] = self._issue(
                stream.name, shard.shard_id, end, iterator.hops + 1
            )
        else:
            answer["ChildShards"] = [
                {
                    "ShardId": child.shard_id,
                    "ParentShards": [p for p in (child.parent, child.adjacent_parent) if p],
                    "HashKeyRange": child.to_json()["HashKeyRange"],
                }
                for child in stream.shards.values()
                if shard.shard_id in (child.parent, child.adjacent_parent)
            ]
        return answer

    def _put_record(self, body: dict[str, Any]) -> dict[str, Any]:
        stream = self._stream(body)
        shard_id, sequence = self.put(
            stream.name,
            str(body["PartitionKey"]),
            base64.b64decode(body["Data"]),
            body.get("ExplicitHashKey"),
        )
        return {"ShardId": shard_id, "SequenceNumber": sequence, "EncryptionType": "NONE"}

    def _put_records(self, body: dict[str, Any]) -> dict[str, Any]:
        stream = self._stream(body)
        out = []
        for entry in body.get("Records", []):
            shard_id, sequence = self.put(
                stream.name,
                str(entry["PartitionKey"]),
                base64.b64decode(entry["Data"]),
                entry.get("ExplicitHashKey"),
            )
            out.append({"ShardId": shard_id, "SequenceNumber": sequence})
        return {"FailedRecordCount": 0, "Records": out, "EncryptionType": "NONE"}

    def _split_shard(self, body: dict[str, Any]) -> dict[str, Any]:
        stream = self._stream(body)
        self.split(stream.name, str(body["ShardToSplit"]), int(body["NewStartingHashKey"]))
        return {}

    def _merge_shards(self, body: dict[str, Any]) -> dict[str, Any]:
        stream = self._stream(body)
        self.merge(stream.name, str(body["ShardToMerge"]), str(body["AdjacentShardToMerge"]))
        return {}

    def _update_shard_count(self, body: dict[str, Any]) -> dict[str, Any]:
        """UNIFORM_SCALING to double or halve: split every open shard, or merge neighbours."""
        stream = self._stream(body)
        current = sorted(
            (s for s in stream.shards.values() if s.open), key=lambda s: s.starting_hash
        )
        target = int(body["TargetShardCount"])
        if target == 2 * len(current):
            for shard in current:
                self.split(stream.name, shard.shard_id)
        elif 2 * target == len(current):
            for low, high in zip(current[::2], current[1::2], strict=True):
                self.merge(stream.name, low.shard_id, high.shard_id)
        else:
            raise AwsError(
                "InvalidArgumentException",
                "this double scales uniformly by doubling or halving the open shard count",
            )
        return {
            "StreamName": stream.name,
            "StreamARN": stream.arn,
            "CurrentShardCount": len(current),
            "TargetShardCount": target,
        }
