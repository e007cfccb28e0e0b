"""Replay and capture: bounded reads from a chosen position, and archives that outlive the
stream's 24 h retention (pure parts here; the CLI wires the I/O).

A time bound works at ``ApproximateCreationDateTime``'s precision, one second: ``--from T``
includes every record stamped in T's second, ``--to T`` every record up to the end of it.
A sequence-number bound starts at that record in its shard; other shards contribute their
records with larger sequence numbers (DynamoDB's sequence numbers grow over time).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from processor.core.records import StreamRecord
from processor.core.tenancy import TenantResolver
from processor.errors import ConfigError, RecordError
from processor.leases.model import Lease
from processor.sources.lineage import Shard

__all__ = [
    "ArchiveWriter",
    "Bound",
    "ReplayRange",
    "parse_bound",
    "read_archive",
    "replay_namespace",
]


@dataclass(frozen=True, slots=True)
class Bound:
    kind: str  # "trim" | "seq" | "time"
    seq: int | None = None
    time: float | None = None  # epoch seconds, whole

    def __str__(self) -> str:
        if self.kind == "seq":
            return str(self.seq)
        if self.kind == "time":
            return datetime.fromtimestamp(self.time or 0, tz=UTC).isoformat()
        return "trim-horizon"


def parse_bound(text: str, *, flag: str, allow_trim: bool) -> Bound:
    """``trim-horizon``, a sequence number, or an ISO 8601 time (UTC when no zone is given)."""
    if text == "trim-horizon":
        if not allow_trim:
            raise ConfigError(flag, text, "trim-horizon only makes sense for --from")
        return Bound("trim")
    if text.isdigit():
        return Bound("seq", seq=int(text))
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            flag,
            text,
            "use trim-horizon, a sequence number, or an ISO 8601 time such as 2026-11-23T10:00:00Z",
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return Bound("time", time=float(math.floor(when.timestamp())))


def replay_namespace(application: str, *parts: object) -> str:
    """A lease namespace of its own for one replay (same arguments, same namespace)."""
    digest = hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:10]
    return f"{application}-replay-{digest}"


#: how much earlier than a replay's start an AT_TIMESTAMP iterator starts (clock disagreement
#: between DynamoDB's creation time and Kinesis' arrival time)
ARRIVAL_MARGIN_S = 60.0


@dataclass
class ReplayRange:
    """Which records a replay delivers: the range, and optionally some tenants only."""

    start: Bound
    end: Bound | None = None
    tenants: frozenset[str] | None = None
    resolver: TenantResolver | None = None
    #: how coarse the source's creation times are (AWS: 1 s; DynamoDB Local: 60 s). A record
    #: stamped in the same tick as the start bound may be in range: it is never skipped.
    granularity_s: float = 1.0
    #: the source starts iterators at a time (Kinesis' AT_TIMESTAMP, by arrival time): a
    #: replay from a time starts there instead of reading the shard from its trim horizon
    at_timestamp: bool = False
    skipped: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def position_for(self, shard: Shard | None, lease: Lease) -> tuple[str, str | None] | None:
        """Where a shard starts; None when none of its records can be in range."""
        first = (
            int(shard.starting_sequence_number)
            if shard and shard.starting_sequence_number
            else None
        )
        last = int(shard.ending_sequence_number) if shard and shard.ending_sequence_number else None
        if (
            self.end is not None
            and self.end.kind == "seq"
            and first is not None
            and first > (self.end.seq or 0)
        ):
            return None
        if self.start.kind == "seq":
            seq = self.start.seq or 0
            if last is not None and last < seq:
                return None
            if first is not None and first <= seq:
                return ("AT_SEQUENCE_NUMBER", str(seq))
        if self.start.kind == "time" and self.at_timestamp:
            # a change reaches Kinesis after it is made, so everything created from the start
            # arrived from then on; the margin allows for clocks that disagree a little
            return ("AT_TIMESTAMP", repr(self._earliest_stamp() - ARRIVAL_MARGIN_S))
        return ("TRIM_HORIZON", None)

    def _created(self, record: StreamRecord) -> float | None:
        when = record.approximate_creation_time
        return math.floor(when.timestamp()) if when else None

    def _earliest_stamp(self) -> float:
        """The smallest stamp a record at or after the start bound can carry."""
        start = self.start.time or 0.0
        return math.floor(start / self.granularity_s) * self.granularity_s

    def window(self, records: list[StreamRecord]) -> tuple[list[StreamRecord], bool]:
        kept: list[StreamRecord] = []
        earliest = self._earliest_stamp()
        skipped: Counter[str] = Counter()
        ended = False
        for record in records:
            created = self._created(record)
            if self.end is not None and (
                (self.end.kind == "seq" and record.sequence_int > (self.end.seq or 0))
                or (
                    self.end.kind == "time"
                    and created is not None
                    and created > (self.end.time or 0)
                )
            ):
                ended = True
                break
            if (self.start.kind == "seq" and record.sequence_int < (self.start.seq or 0)) or (
                self.start.kind == "time" and created is not None and created < earliest
            ):
                skipped["before_range"] += 1
                continue
            if (
                self.tenants is not None
                and self.resolver is not None
                and self.resolver.tenant_of(record) not in self.tenants
            ):
                skipped["other_tenants"] += 1
                continue
            kept.append(record)
        with self._lock:
            self.skipped.update(skipped)
        return kept, ended


class ArchiveWriter:
    """JSON Lines of raw records, gzip when the name ends in .gz, rotated by size.

    ``archive.jsonl.gz`` becomes ``archive-000001.jsonl.gz``, ``archive-000002.jsonl.gz``...
    Each batch is flushed and fsync'd before it counts as handled.
    """

    def __init__(self, path: str | Path, *, rotate_bytes: int = 64 * 1024 * 1024) -> None:
        self.base = Path(path)
        self.rotate_bytes = rotate_bytes
        self._lock = threading.Lock()
        self._index = 0
        self._handle: Any = None  # a GzipFile or the raw file
        self._raw: IO[bytes] | None = None
        self.files: list[Path] = []

    def _name(self, index: int) -> Path:
        name = self.base.name
        stem, dot, rest = name.partition(".")
        return self.base.with_name(f"{stem}-{index:06d}{dot}{rest}")

    def _open_next(self) -> None:
        self.close()
        self._index += 1
        while self._name(self._index).exists():
            self._index += 1
        path = self._name(self._index)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._raw = path.open("ab")
        self._handle = (
            gzip.GzipFile(fileobj=self._raw, mode="ab") if path.suffix == ".gz" else self._raw
        )
        self.files.append(path)

    def write(self, records: Sequence[StreamRecord]) -> None:
        payload = b"".join(
            json.dumps(r.raw, separators=(",", ":")).encode() + b"\n" for r in records
        )
        with self._lock:
            if self._handle is None or (
                self._raw is not None and self._raw.tell() >= self.rotate_bytes
            ):
                self._open_next()
            assert self._raw is not None
            self._handle.write(payload)
            self._handle.flush()
            self._raw.flush()
            os.fsync(self._raw.fileno())

    def __call__(self, records: Sequence[StreamRecord]) -> None:
        self.write(records)

    def close(self) -> None:
        if self._handle is not None and self._handle is not self._raw:
            self._handle.close()
        if self._raw is not None:
            self._raw.close()
        self._handle = self._raw = None


def read_archive(
    paths: Sequence[str | Path],
) -> Iterator[tuple[Any, StreamRecord | None, Exception | None]]:
    """(line document, record or None, error) of capture files and dead-letter files alike."""
    for path in paths:
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as handle:
            for line in handle:
                if not line.strip():
                    continue
                doc = json.loads(line)
                raw = (
                    doc["record"]
                    if isinstance(doc, dict) and "record" in doc and "route" in doc
                    else doc
                )
                try:
                    yield doc, StreamRecord.from_wire(raw, shard_id=None), None
                except RecordError as exc:
                    yield doc, None, exc
