"""The KCL MultiLang wire protocol, as KCL 2/3's MultiLangDaemon speaks it: pure functions.

Daemon to child, one compact JSON object per line: ``initialize``, ``processRecords``,
``leaseLost``, ``shardEnded``, ``shutdownRequested``, and the answer to each ``checkpoint``
request. Every object carries an ``action`` (amazon_kclpy decodes nested objects by it), and
the legacy KCL 1.x ``shutdown`` message is never sent (amazon_kclpy 2.x/3.x crashes on it).

Records look the way the DynamoDB Streams Kinesis Adapter (v2) presents a stream record:
``data`` is base64 of the UTF-8 JSON of the record (``eventID``, ``eventName``,
``eventVersion``, ``eventSource``, ``awsRegion``, ``dynamodb`` with
``ApproximateCreationDateTime`` in epoch milliseconds, ``Keys``, ``NewImage``, ``OldImage``,
``SequenceNumber``, ``SizeBytes``, ``StreamViewType``, and ``userIdentity`` when present;
nulls omitted, binary attributes base64 as on the wire); ``sequenceNumber`` and
``partitionKey`` are the stream sequence number, ``subSequenceNumber`` 0 and
``approximateArrivalTimestamp`` the creation time in milliseconds.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from processor.core.records import StreamRecord

__all__ = [
    "SHARD_END",
    "CheckpointRange",
    "CheckpointRequest",
    "checkpoint_reply",
    "encode",
    "initialize",
    "kcl_record",
    "lease_lost",
    "parse_line",
    "process_records",
    "shard_ended",
    "shutdown_requested",
]

SHARD_END = "SHARD_END"
_TOP_LEVEL = ("eventID", "eventName", "eventVersion", "eventSource", "awsRegion")
_DYNAMODB = ("Keys", "NewImage", "OldImage", "SequenceNumber", "SizeBytes", "StreamViewType")


def encode(message: dict[str, Any]) -> bytes:
    """One line for the child's stdin: compact JSON, as Jackson writes it."""
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def _millis(seconds: float | int | None) -> int:
    return round(float(seconds or 0) * 1000)


def adapter_document(raw: dict[str, Any]) -> dict[str, Any]:
    """The stream record as the adapter's Jackson mapper wrote it (nulls omitted)."""
    document: dict[str, Any] = {k: raw[k] for k in _TOP_LEVEL if raw.get(k) is not None}
    stream = raw.get("dynamodb") or {}
    inner: dict[str, Any] = {}
    if stream.get("ApproximateCreationDateTime") is not None:
        inner["ApproximateCreationDateTime"] = _millis(stream["ApproximateCreationDateTime"])
    for key in _DYNAMODB:
        if stream.get(key) is not None:
            inner[key] = stream[key]
    document["dynamodb"] = inner
    if raw.get("userIdentity") is not None:
        document["userIdentity"] = raw["userIdentity"]
    return document


def kcl_record(record: StreamRecord) -> dict[str, Any]:
    raw = record.raw
    created = (raw.get("dynamodb") or {}).get("ApproximateCreationDateTime")
    data = json.dumps(adapter_document(raw), separators=(",", ":")).encode()
    return {  # the Java daemon's field order (JsonFriendlyRecord)
        "data": base64.b64encode(data).decode(),
        "partitionKey": record.sequence_number,
        "sequenceNumber": record.sequence_number,
        "approximateArrivalTimestamp": _millis(created),
        "subSequenceNumber": 0,
        "action": "record",
    }


def initialize(shard_id: str, position: str) -> dict[str, Any]:
    """``position``: the checkpoint, or TRIM_HORIZON / LATEST when there is none."""
    return {
        "action": "initialize",
        "shardId": shard_id,
        "sequenceNumber": position,
        "subSequenceNumber": 0,
    }


def process_records(records: list[StreamRecord], millis_behind_latest: int) -> dict[str, Any]:
    return {
        "action": "processRecords",
        "records": [kcl_record(r) for r in records],
        "millisBehindLatest": millis_behind_latest,
    }


def lease_lost() -> dict[str, Any]:
    return {"action": "leaseLost"}


def shard_ended() -> dict[str, Any]:
    return {"action": "shardEnded"}


def shutdown_requested() -> dict[str, Any]:
    return {"action": "shutdownRequested"}


def checkpoint_reply(request: dict[str, Any], error: str | None) -> dict[str, Any]:
    """The echo of a checkpoint request with ``error``: None or a Java exception's simple name."""
    return {
        "action": "checkpoint",
        "sequenceNumber": request.get("sequenceNumber"),
        "subSequenceNumber": request.get("subSequenceNumber"),
        "error": error,
    }


def parse_line(line: bytes | str) -> dict[str, Any] | None:
    """A child's stdout line: its message, or None for blank and non-JSON lines (a user's
    ``print``), which the Java daemon skips too."""
    text = line.decode(errors="replace") if isinstance(line, bytes) else line
    text = text.strip()
    if not text:
        return None
    try:
        message = json.loads(text)
    except ValueError:
        return None
    return message if isinstance(message, dict) and "action" in message else None


@dataclass(frozen=True, slots=True)
class CheckpointRequest:
    """What a child asked to checkpoint: a sequence number, or None for "largest permitted"."""

    sequence_number: str | None
    sub_sequence_number: int | None


class CheckpointRange:
    """The Java checkpointer's rule: a checkpoint must lie in [last checkpoint, largest
    sequence number delivered]; after ``shardEnded`` the largest permitted is SHARD_END."""

    #: delivered sequence numbers remembered for their spelling (bounded)
    MAX_SPELLINGS = 100_000

    def __init__(self, last: str | None) -> None:
        self.last = last
        self.largest: str | None = last
        self.ended = False
        #: number -> the sequence number as the stream spelled it. Processors often parse it
        #: (AWS's sample checkpoints ``str(int(seq))``); DynamoDB Local pads with zeros, so
        #: "1" must be written back as "000000000000000000001".
        self._spelling: dict[int, str] = {}

    def delivered(self, sequence_number: str) -> None:
        if self.largest is None or int(sequence_number) > int(self.largest):
            self.largest = sequence_number
        self._spelling[int(sequence_number)] = sequence_number
        if len(self._spelling) > self.MAX_SPELLINGS:
            del self._spelling[min(self._spelling)]

    def resolve(self, request: CheckpointRequest) -> str | None:
        """The sequence number to write (SHARD_END for the end), or raise ValueError with
        the reason (the child sees IllegalArgumentException)."""
        sub = request.sub_sequence_number
        if sub is not None and sub < 0:
            raise ValueError(f"subSequenceNumber {sub} is negative")
        wanted = request.sequence_number
        if wanted is None:
            if sub is not None:
                raise ValueError("a subSequenceNumber needs a sequenceNumber")
            return SHARD_END if self.ended else self.largest
        if wanted == SHARD_END:
            if not self.ended:
                raise ValueError("SHARD_END before the shard ended")
            return SHARD_END
        if not wanted.isdigit():
            raise ValueError(f"{wanted!r} is not a sequence number")
        low = int(self.last) if self.last and self.last.isdigit() else -1
        high = int(self.largest) if self.largest is not None else -1
        if not low <= int(wanted) <= high:
            raise ValueError(
                f"sequence number {wanted} did not fall into acceptable range "
                f"[{self.last}, {self.largest}]"
            )
        number = int(wanted)
        if number == low and self.last is not None:
            return self.last
        return self._spelling.get(number, wanted)

    def checkpointed(self, sequence_number: str) -> None:
        self.last = sequence_number
        number = int(sequence_number)
        for known in [k for k in self._spelling if k < number]:
            del self._spelling[known]
