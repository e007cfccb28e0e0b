"""A DynamoDB Streams double: a real HTTP server on 127.0.0.1 speaking the JSON wire protocol.

moto serves one shard per stream and never expires or trims. This double serves what a real
stream does to a reader: shard trees (splits, rollovers, several generations, hundreds of
shards with DescribeStream pagination and ``ShardFilter``), iterators that expire after N
uses or T seconds, a trim horizon that moves, throttling every k-th call and server errors,
all with AWS-shaped errors, so the real boto3 client, its retries and our error translation
are exercised.

Scenarios are data::

    scenario = Scenario.tree(generations=3, fanout=2, records_per_shard=20, keys=8)
    scenario.expire_after_calls = 3
    with StreamDouble(scenario) as double:
        ...  # point dsp at double.endpoint with stream.arn = double.stream_arn

Shard ids sort in creation order; sequence numbers grow across generations, so for every
item key, reading parents before children gives the changes in order.

Months in minutes: with ``rollover_s`` every open shard closes and opens its child on the
double's clock, as DynamoDB Streams does about every four hours, and with ``retention_s`` a
shard closed that long ago leaves ``DescribeStream`` (GetShardIterator then answers
ResourceNotFoundException)::

    scenario = Scenario.rolling(lineages=4, rollover_s=2.0, retention_s=10.0)
    with StreamDouble(scenario) as double:
        sequence = double.write("k1")  # to the open shard of k1's lineage
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from processor.testing._local_server import AwsError, LocalJsonServer, Served

__all__ = ["Scenario", "ShardSpec", "StreamDouble"]

#: rolling scenarios: shard n's sequence numbers start at ROLLING_BASE + n * ROLLING_GAP
ROLLING_BASE = 100_000_000_000_000_000_000
ROLLING_GAP = 10**12
STREAM_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/double/stream/2026-01-01T00:00:00.000"
_ERROR_PREFIX = "com.amazonaws.dynamodb.v20120810#"


@dataclass
class ShardSpec:
    shard_id: str
    parent_shard_id: str | None
    keys: list[str]  # one record per entry, in order: the item key it changes
    closed: bool = True
    first_sequence: int = 0  # set by Scenario
    lineage: int = 0  # rolling scenarios: which lineage (keys hash to one)
    closed_at: float | None = None  # rolling scenarios: when it closed (the double's clock)
    times: list[float] = field(default_factory=list)  # written records' creation times
    #: per record, what it serves instead of the made-up change: ``eventName`` and fields of
    #: its ``dynamodb`` body (``Keys``, ``NewImage``, ``OldImage``, ``StreamViewType``...)
    changes: list[dict[str, Any]] = field(default_factory=list)

    def sequence(self, index: int) -> int:
        return self.first_sequence + index


@dataclass
class Scenario:
    """What the double serves. Mutate it between calls to move the trim horizon or add data."""

    shards: list[ShardSpec]
    expire_after_calls: int | None = None  # an iterator chain expires after N GetRecords
    expire_after_s: float | None = None
    throttle_every: int | None = None  # every k-th GetRecords answers LimitExceededException
    fail_every: int | None = None  # every k-th GetRecords answers InternalServerError
    deny_get_records: bool = False  # GetRecords answers AccessDeniedException (a missing grant)
    trim_horizon: dict[str, int] = field(default_factory=dict)  # shard -> first index kept
    created: float = 1_795_000_000.0
    #: every open shard closes and opens its child this often (the double's clock); None: never
    rollover_s: float | None = None
    #: a shard closed this long ago leaves the stream; None: shards stay
    retention_s: float | None = None
    #: the table's key attributes, as DescribeStream's KeySchema: the hash key, then the range
    key_attributes: tuple[str, ...] = ("pk",)

    def __post_init__(self) -> None:
        self.renumber()

    def renumber(self) -> None:
        """Give shards increasing, non-overlapping sequence number ranges in list order."""
        next_seq = 100_000_000_000_000_000_000
        for shard in self.shards:
            shard.first_sequence = next_seq
            next_seq += max(len(shard.keys), 1) + 1_000

    # -- builders -----------------------------------------------------------------------------

    @classmethod
    def tree(
        cls,
        *,
        generations: int = 3,
        fanout: int = 2,
        records_per_shard: int = 10,
        keys: int = 6,
        roots: int = 1,
        last_open: bool = True,
    ) -> Scenario:
        """Roots that split ``fanout`` ways for ``generations`` levels (fanout 1: rollovers).

        As in DynamoDB, an item key lives in exactly one shard of a generation: the roots
        share the ``keys`` item keys out and each split shares its parent's keys among its
        children, so each key's history runs down one lineage path. The last generation is
        open unless ``last_open`` is False.
        """
        counter = itertools.count()
        shards: list[ShardSpec] = []
        names = [f"k{i}" for i in range(keys)]
        level: list[tuple[str | None, list[str]]] = [(None, names[r::roots]) for r in range(roots)]
        for gen in range(generations):
            next_level: list[tuple[str | None, list[str]]] = []
            for parent, owned in level:
                parts = fanout if parent is not None else 1
                for part in range(parts):
                    mine = owned[part::parts] or [f"{(owned or ['k'])[0]}-{gen}-{part}"]
                    shard_id = f"shardId-{next(counter):020d}-{gen:08x}"
                    closed = gen < generations - 1 or not last_open
                    records = [mine[i % len(mine)] for i in range(records_per_shard)]
                    shards.append(ShardSpec(shard_id, parent, records, closed))
                    next_level.append((shard_id, mine))
            level = next_level
        return cls(shards)

    @classmethod
    def rolling(
        cls, *, lineages: int, rollover_s: float, retention_s: float | None = None
    ) -> Scenario:
        """``lineages`` open shards, empty, that roll over every ``rollover_s`` and leave the
        stream ``retention_s`` after they closed; records come from :meth:`StreamDouble.write`.
        """
        shards = [
            ShardSpec(f"shardId-{0:012d}-{lineage:08x}", None, [], False, lineage=lineage)
            for lineage in range(lineages)
        ]
        scenario = cls(shards, rollover_s=rollover_s, retention_s=retention_s)
        for index, shard in enumerate(shards):  # room for any number of writes per shard
            shard.first_sequence = ROLLING_BASE + index * ROLLING_GAP
        return scenario

    @classmethod
    def flat(cls, shards: int, *, records_per_shard: int = 2, closed: bool = False) -> Scenario:
        """Many independent shards (no lineage): for pagination and scale."""
        return cls(
            [
                ShardSpec(
                    f"shardId-{i:020d}-ffffffff",
                    None,
                    [f"s{i}k{j % 3}" for j in range(records_per_shard)],
                    closed,
                )
                for i in range(shards)
            ]
        )

    # -- helpers ------------------------------------------------------------------------------

    def shard(self, shard_id: str) -> ShardSpec:
        for shard in self.shards:
            if shard.shard_id == shard_id:
                return shard
        raise KeyError(shard_id)

    def all_records(self) -> Iterator[tuple[str, str, int]]:
        """(shard_id, key, sequence number) of every record served."""
        for shard in self.shards:
            for index, key in enumerate(shard.keys):
                yield shard.shard_id, key, shard.sequence(index)


@dataclass
class _Iterator:
    shard_id: str
    position: int  # index of the next record
    issued_at: float
    hops: int = 0


class StreamDouble(Served):
    """Serve a :class:`Scenario` at ``endpoint`` until closed (use as a context manager)."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        stream_arn: str = STREAM_ARN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.scenario = scenario
        self.stream_arn = stream_arn
        self._clock = clock
        self._next_roll = clock() + scenario.rollover_s if scenario.rollover_s else None
        self.generation = 0
        #: shards that left the stream (past the retention), oldest first
        self.departed: list[ShardSpec] = []
        self._lock = threading.Lock()
        self._iterators: dict[str, _Iterator] = {}
        self._ids = itertools.count(1)
        self.calls: Counter[str] = Counter()
        self.call_times: dict[str, list[float]] = {}
        self._server = LocalJsonServer(self._answer)

    def _answer(
        self, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        status, answer = self._serve(target.rpartition(".")[2], json.loads(body or b"{}"))
        return (
            status,
            {
                "Content-Type": "application/x-amz-json-1.0",
                "x-amzn-RequestId": f"double-{next(self._ids)}",
            },
            json.dumps(answer).encode(),
        )

    # -- dispatch -----------------------------------------------------------------------------

    def _serve(self, operation: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self._advance()
            self.calls[operation] += 1
            self.call_times.setdefault(operation, []).append(time.monotonic())
            try:
                handler = {
                    "ListStreams": self._list_streams,
                    "DescribeStream": self._describe_stream,
                    "GetShardIterator": self._get_shard_iterator,
                    "GetRecords": self._get_records,
                }.get(operation)
                if handler is None:
                    raise AwsError(  # noqa: TRY301 - answered below like every AWS error
                        "UnknownOperationException", f"unknown operation {operation}"
                    )
                return 200, handler(body)
            except AwsError as exc:
                return exc.status, {"__type": _ERROR_PREFIX + exc.code, "message": str(exc)}

    def _check_arn(self, body: dict[str, Any]) -> None:
        if body.get("StreamArn") != self.stream_arn:
            raise AwsError(
                "ResourceNotFoundException",
                f"Requested resource not found: {body.get('StreamArn')}",
            )

    def _list_streams(self, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "Streams": [
                {
                    "StreamArn": self.stream_arn,
                    "TableName": "double",
                    "StreamLabel": "2026-01-01T00:00:00.000",
                }
            ]
        }

    def _shard_json(self, shard: ShardSpec) -> dict[str, Any]:
        seq_range: dict[str, str] = {"StartingSequenceNumber": str(shard.first_sequence)}
        if shard.closed:
            seq_range["EndingSequenceNumber"] = str(shard.sequence(max(len(shard.keys) - 1, 0)))
        out: dict[str, Any] = {"ShardId": shard.shard_id, "SequenceNumberRange": seq_range}
        if shard.parent_shard_id:
            out["ParentShardId"] = shard.parent_shard_id
        return out

    def _describe_stream(self, body: dict[str, Any]) -> dict[str, Any]:
        self._check_arn(body)
        limit = min(int(body.get("Limit", 100)), 100)
        shards = sorted(self.scenario.shards, key=lambda s: s.shard_id)
        shard_filter = body.get("ShardFilter")
        if shard_filter:
            if shard_filter.get("Type") != "CHILD_SHARDS":
                raise AwsError("ValidationException", "ShardFilter Type must be CHILD_SHARDS")
            shards = [s for s in shards if s.parent_shard_id == shard_filter.get("ShardId")]
        start = body.get("ExclusiveStartShardId")
        if start:
            shards = [s for s in shards if s.shard_id > start]
        page = shards[:limit]
        description: dict[str, Any] = {
            "StreamArn": self.stream_arn,
            "StreamLabel": "2026-01-01T00:00:00.000",
            "StreamStatus": "ENABLED",
            "StreamViewType": "NEW_AND_OLD_IMAGES",
            "CreationRequestDateTime": self.scenario.created,
            "TableName": "double",
            "KeySchema": [
                {"AttributeName": name, "KeyType": kind}
                for name, kind in zip(self.scenario.key_attributes, ("HASH", "RANGE"), strict=False)
            ],
            "Shards": [self._shard_json(s) for s in page],
        }
        if len(shards) > limit:
            description["LastEvaluatedShardId"] = page[-1].shard_id
        return {"StreamDescription": description}

    def _issue(self, shard_id: str, position: int) -> str:
        token = f"{self.stream_arn}|{shard_id}|{next(self._ids):x}"
        self._iterators[token] = _Iterator(shard_id, position, time.monotonic())
        return token

    def _get_shard_iterator(self, body: dict[str, Any]) -> dict[str, Any]:
        self._check_arn(body)
        try:
            shard = self.scenario.shard(body.get("ShardId", ""))
        except KeyError:
            raise AwsError(
                "ResourceNotFoundException", f"Shard {body.get('ShardId')} not found"
            ) from None
        kind = body.get("ShardIteratorType")
        trim = self.scenario.trim_horizon.get(shard.shard_id, 0)
        if kind == "TRIM_HORIZON":
            position = trim
        elif kind == "LATEST":
            position = len(shard.keys)
        elif kind in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
            seq = int(body.get("SequenceNumber", "0"))
            index = seq - shard.first_sequence
            if not 0 <= index < max(len(shard.keys), 1) + 1:
                raise AwsError(
                    "ValidationException", f"SequenceNumber {seq} is not in shard {shard.shard_id}"
                )
            position = index + (1 if kind == "AFTER_SEQUENCE_NUMBER" else 0)
            if position < trim:
                raise AwsError(
                    "TrimmedDataAccessException",
                    f"Requested sequence {seq} is beyond the trim horizon of {shard.shard_id}",
                )
        else:
            raise AwsError("ValidationException", f"invalid ShardIteratorType {kind}")
        return {"ShardIterator": self._issue(shard.shard_id, position)}

    def _get_records(self, body: dict[str, Any]) -> dict[str, Any]:
        n = self.calls["GetRecords"]
        scenario = self.scenario
        if scenario.throttle_every and n % scenario.throttle_every == 0:
            raise AwsError("LimitExceededException", "Rate exceeded for shard")
        if scenario.fail_every and n % scenario.fail_every == 0:
            raise AwsError("InternalServerError", "Internal server error", status=500)
        if scenario.deny_get_records:
            raise AwsError(
                "AccessDeniedException",
                "User: arn:aws:sts::123456789012:assumed-role/dsp/worker is not authorized to "
                "perform: dynamodb:GetRecords on resource: " + STREAM_ARN,
            )
        token = body.get("ShardIterator", "")
        iterator = self._iterators.get(token)
        if iterator is None:
            raise AwsError("ValidationException", "Invalid ShardIterator")
        if (
            scenario.expire_after_calls is not None and iterator.hops >= scenario.expire_after_calls
        ) or (
            scenario.expire_after_s is not None
            and time.monotonic() - iterator.issued_at > scenario.expire_after_s
        ):
            raise AwsError(
                "ExpiredIteratorException",
                "Iterator expired. The iterator was created too long ago",
            )
        try:
            shard = scenario.shard(iterator.shard_id)
        except KeyError:  # it left the stream (past the retention) with its records
            raise AwsError(
                "TrimmedDataAccessException", f"records of {iterator.shard_id} were trimmed"
            ) from None
        if iterator.position < scenario.trim_horizon.get(shard.shard_id, 0):
            raise AwsError(
                "TrimmedDataAccessException", f"records of {shard.shard_id} were trimmed"
            )
        limit = min(int(body.get("Limit", 1000)), 1000)
        start = iterator.position
        end = min(start + limit, len(shard.keys))
        records = [self._record(shard, i) for i in range(start, end)]
        answer: dict[str, Any] = {"Records": records}
        del self._iterators[token]
        if not (shard.closed and end >= len(shard.keys)):
            nxt = self._issue(shard.shard_id, end)
            self._iterators[nxt].hops = iterator.hops + 1
            self._iterators[nxt].issued_at = iterator.issued_at
            answer["NextShardIterator"] = nxt
        return answer

    def _record(self, shard: ShardSpec, index: int) -> dict[str, Any]:
        key = shard.keys[index]
        seq = shard.sequence(index)
        record: dict[str, Any] = {
            "eventID": f"{seq:x}",
            "eventName": "MODIFY",
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1",
            "dynamodb": {
                "ApproximateCreationDateTime": (
                    shard.times[index]
                    if index < len(shard.times)
                    else self.scenario.created + index
                ),
                "Keys": {"pk": {"S": key}},
                "NewImage": {
                    "pk": {"S": key},
                    "shard": {"S": shard.shard_id},
                    "seq": {"N": str(seq)},
                },
                "SequenceNumber": str(seq),
                "SizeBytes": 64,
                "StreamViewType": "NEW_AND_OLD_IMAGES",
            },
        }
        if index < len(shard.changes):
            change = dict(shard.changes[index])
            record["eventName"] = change.pop("eventName", record["eventName"])
            record["dynamodb"].update(change)
        return record

    # -- the clock ------------------------------------------------------------------------------

    def _advance(self) -> None:
        """Roll over and forget what the clock says is due (called under the lock)."""
        scenario = self.scenario
        now = self._clock()
        while self._next_roll is not None and scenario.rollover_s and now >= self._next_roll:
            self._roll(self._next_roll)
            self._next_roll += scenario.rollover_s
        if scenario.retention_s is not None:
            kept = []
            for shard in scenario.shards:
                if shard.closed_at is not None and now - shard.closed_at >= scenario.retention_s:
                    self.departed.append(shard)
                else:
                    kept.append(shard)
            scenario.shards = kept

    def _roll(self, at: float) -> None:
        self.generation += 1
        scenario = self.scenario
        base = max(s.first_sequence for s in scenario.shards) + ROLLING_GAP
        children: list[ShardSpec] = []
        for shard in sorted(scenario.shards, key=lambda s: s.lineage):
            if shard.closed:
                continue
            shard.closed, shard.closed_at = True, at
            child = ShardSpec(
                f"shardId-{self.generation:012d}-{shard.lineage:08x}",
                shard.shard_id,
                [],
                False,
                first_sequence=base + len(children) * ROLLING_GAP,
                lineage=shard.lineage,
            )
            children.append(child)
        scenario.shards.extend(children)

    def write(self, key: str) -> int:
        """A change to item ``key`` in the open shard of its lineage (rolling scenarios); its
        sequence number."""
        with self._lock:
            self._advance()
            open_shards = sorted(
                (s for s in self.scenario.shards if not s.closed), key=lambda s: s.lineage
            )
            shard = open_shards[zlib.crc32(key.encode()) % len(open_shards)]
            shard.keys.append(key)
            shard.times.append(time.time())
            return shard.sequence(len(shard.keys) - 1)

    # -- test controls ------------------------------------------------------------------------

    def trim(self, shard_id: str, first_kept_index: int) -> None:
        """Move a shard's trim horizon: records before the index are gone."""
        with self._lock:
            self.scenario.trim_horizon[shard_id] = first_kept_index

    def append(self, shard_id: str, keys: list[str]) -> None:
        """Add records to an open shard."""
        with self._lock:
            self.scenario.shard(shard_id).keys.extend(keys)
