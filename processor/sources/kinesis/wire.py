"""Decoding one Kinesis record of a DynamoDB table's Kinesis Data Streams destination.

The record's ``Data`` is UTF-8 JSON (the DynamoDB developer guide, "Kinesis Data Streams for
DynamoDB")::

    {"awsRegion": ..., "eventID": ..., "eventName": "INSERT|MODIFY|REMOVE",
     "userIdentity": null | {"type": "Service", "principalId": "dynamodb.amazonaws.com"},
     "recordFormat": "application/json", "tableName": ...,
     "dynamodb": {"ApproximateCreationDateTime": <ms, or µs>, "Keys": ..., "NewImage"?: ...,
                  "OldImage"?: ..., "SizeBytes": ...,
                  "ApproximateCreationDateTimePrecision"?: "MILLISECOND" | "MICROSECOND"},
     "eventSource": "aws:dynamodb"}

It has no ``SequenceNumber``, ``StreamViewType`` or ``eventVersion``. We give the record the
shape a DynamoDB stream record has, so every filter sees the same ``dynamodb.NewImage...``:
* ``dynamodb.SequenceNumber`` is the Kinesis sequence number (a position in the shard, not an
  item version: KDS may deliver out of order and more than once);
* ``ApproximateCreationDateTime`` becomes seconds (a float, µs kept when the precision says
  so), as in DynamoDB Streams and Lambda events; the raw value stays in
  ``ApproximateCreationDateTimeRaw``;
* ``eventSourceARN`` names the table (``tableName``) so ``record.table_name`` works.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any, Required, TypedDict

import msgspec

from processor.core.records import StreamRecord
from processor.errors import RecordError

__all__ = ["KDS_SHAPE_FIELDS", "KinesisPage", "decode_page", "from_kinesis"]

#: the top-level fields of a KDS-for-DynamoDB payload
KDS_SHAPE_FIELDS = frozenset(
    {"awsRegion", "eventID", "eventName", "userIdentity", "recordFormat", "tableName",
     "dynamodb", "eventSource"}
)  # fmt: skip

_decode = msgspec.json.Decoder().decode
_SCALE = {"MICROSECOND": 1_000_000, "MILLISECOND": 1_000}


class _Dynamodb(TypedDict, total=False):
    Keys: Required[dict[str, dict[str, Any]]]
    NewImage: msgspec.Raw
    OldImage: msgspec.Raw
    ApproximateCreationDateTime: float
    ApproximateCreationDateTimePrecision: str
    SizeBytes: int


class _Payload(TypedDict, total=False):
    eventID: Required[str]
    eventName: Required[str]
    dynamodb: Required[_Dynamodb]
    awsRegion: str
    userIdentity: dict[str, Any] | None
    recordFormat: str
    tableName: str
    eventSource: str


#: the images stay raw JSON until a consumer reads them, as on DynamoDB Streams (keys-only
#: consumers never build them); a payload that does not fit decodes loosely and is checked
_typed = msgspec.json.Decoder(_Payload).decode


def from_kinesis(
    data: bytes | str,
    sequence_number: str,
    *,
    shard_id: str | None = None,
    region: str | None = None,
    account: str | None = None,
) -> StreamRecord:
    """One Kinesis record's ``Data`` as a :class:`StreamRecord`; RecordError if it is not a
    DynamoDB change (the caller dead-letters it whole, with the reason)."""
    lazy: dict[str, Any] | None = None
    try:
        doc: Any = _typed(data)
        ddb: dict[str, Any] = doc["dynamodb"]
        for image in ("NewImage", "OldImage"):
            if image in ddb:
                lazy = lazy or {}
                lazy[image] = ddb.pop(image)
    except msgspec.ValidationError:
        doc = _loose(data, sequence_number)
        ddb = dict(doc["dynamodb"])
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise RecordError(f"Kinesis record {sequence_number} is not JSON: {exc}") from None
    created = ddb.get("ApproximateCreationDateTime")
    if isinstance(created, int | float) and not isinstance(created, bool):
        scale = _SCALE.get(str(ddb.get("ApproximateCreationDateTimePrecision", "")), 1_000)
        ddb["ApproximateCreationDateTimeRaw"] = created
        ddb["ApproximateCreationDateTime"] = created / scale
    ddb["SequenceNumber"] = sequence_number
    raw: dict[str, Any] = {**doc, "dynamodb": ddb}
    table = doc.get("tableName")
    if isinstance(table, str) and table and "eventSourceARN" not in raw:
        where = f"{region or doc.get('awsRegion') or ''}:{account or ''}"
        raw["eventSourceARN"] = f"arn:aws:dynamodb:{where}:table/{table}"
    return StreamRecord.from_wire(raw, shard_id=shard_id, lazy_images=lazy)


def _loose(data: bytes | str, sequence_number: str) -> dict[str, Any]:
    try:
        doc = _decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise RecordError(f"Kinesis record {sequence_number} is not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("dynamodb"), dict):
        raise RecordError(
            f"Kinesis record {sequence_number} is not a DynamoDB change (no 'dynamodb' object)",
            sequence_number=sequence_number,
        )
    return doc


@dataclass(frozen=True, slots=True)
class KinesisPage:
    records: list[StreamRecord]
    next_iterator: str | None
    #: how far behind the tip the shard's reader is (GetRecords' MillisBehindLatest)
    millis_behind: int | None
    #: the last sequence number of the page (a record that did not decode included)
    last_sequence: str | None
    malformed: list[tuple[Any, Exception]]


def decode_page(body: bytes, shard_id: str) -> KinesisPage:
    """A raw Kinesis GetRecords body (botocore's parser skipped, as for DynamoDB Streams):
    each record's base64 ``Data`` decoded to a StreamRecord; what does not decode is kept
    whole, with the reason, for the dead-letter sink."""
    answer = _decode(body)
    records: list[StreamRecord] = []
    malformed: list[tuple[Any, Exception]] = []
    last: str | None = None
    for entry in answer.get("Records") or []:
        last = str(entry.get("SequenceNumber"))
        try:
            data = base64.b64decode(entry.get("Data", ""), validate=True)
            records.append(from_kinesis(data, last, shard_id=shard_id))
        except (RecordError, binascii.Error, ValueError) as exc:
            malformed.append(({"kinesis": entry}, exc))
    behind = answer.get("MillisBehindLatest")
    return KinesisPage(
        records,
        answer.get("NextShardIterator"),
        int(behind) if behind is not None else None,
        last,
        malformed,
    )
