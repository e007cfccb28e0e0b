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

from typing import Any

import msgspec

from processor.core.records import StreamRecord
from processor.errors import RecordError

__all__ = ["KDS_SHAPE_FIELDS", "from_kinesis"]

#: the top-level fields of a KDS-for-DynamoDB payload
KDS_SHAPE_FIELDS = frozenset(
    {"awsRegion", "eventID", "eventName", "userIdentity", "recordFormat", "tableName",
     "dynamodb", "eventSource"}
)  # fmt: skip

_decode = msgspec.json.Decoder().decode
_SCALE = {"MICROSECOND": 1_000_000, "MILLISECOND": 1_000}


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
    try:
        doc = _decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise RecordError(f"Kinesis record {sequence_number} is not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("dynamodb"), dict):
        raise RecordError(
            f"Kinesis record {sequence_number} is not a DynamoDB change (no 'dynamodb' object)",
            sequence_number=sequence_number,
        )
    ddb: dict[str, Any] = dict(doc["dynamodb"])
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
    return StreamRecord.from_wire(raw, shard_id=shard_id)
