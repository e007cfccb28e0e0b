"""Typed decoding of GetRecords bodies: everything but the images, which stay raw JSON.

A 1,000-record page with both images decodes about 12 times faster this way than into plain
dicts (measured: 4.4 ms vs 52.6 ms), because the images' nested objects are never built
unless a consumer reads them. Records decode straight into dicts (TypedDicts, built by
msgspec in C); a page that does not fit the typed shape (a malformed record) falls back to
plain decoding, where each record is checked on its own.

The typed shape lists every field GetRecords documents for a record (``eventID``,
``eventName``, ``eventVersion``, ``eventSource``, ``awsRegion``, ``userIdentity``, and in
``dynamodb``: ``ApproximateCreationDateTime``, ``Keys``, ``NewImage``, ``OldImage``,
``SequenceNumber``, ``SizeBytes``, ``StreamViewType``); a field AWS adds later is dropped
until it is listed here.
"""

from __future__ import annotations

from typing import Any, Required, TypedDict

import msgspec

from processor.core.records import StreamRecord
from processor.errors import RecordError, TransientError

__all__ = ["decode_page"]


class _Dynamodb(TypedDict, total=False):
    Keys: Required[dict[str, dict[str, Any]]]
    SequenceNumber: Required[str]
    NewImage: msgspec.Raw
    OldImage: msgspec.Raw
    ApproximateCreationDateTime: float
    SizeBytes: int
    StreamViewType: str


class _Record(TypedDict, total=False):
    eventID: Required[str]
    eventName: Required[str]
    dynamodb: Required[_Dynamodb]
    eventVersion: str
    eventSource: str
    awsRegion: str
    userIdentity: dict[str, Any]
    eventSourceARN: str


class _Page(msgspec.Struct, gc=False):
    Records: list[_Record] = []
    NextShardIterator: str | None = None


_typed = msgspec.json.Decoder(_Page).decode
_plain = msgspec.json.Decoder().decode
_EVENT_NAMES = frozenset({"INSERT", "MODIFY", "REMOVE"})


def _plain_page(body: bytes) -> dict[str, Any]:
    """The page decoded loosely, checked to be GetRecords-shaped (else TransientError)."""
    try:
        plain = _plain(body)
    except msgspec.DecodeError as exc:
        raise TransientError(f"GetRecords answered a body that is not JSON: {exc}") from None
    if (
        not isinstance(plain, dict)
        or not isinstance(plain.get("Records", []), list)
        or not isinstance(plain.get("NextShardIterator"), str | None)
    ):
        raise TransientError("GetRecords answered a body that is not a GetRecords page")
    return plain


def decode_page(
    body: bytes, shard_id: str
) -> tuple[list[StreamRecord], str | None, list[tuple[Any, Exception]]]:
    """(records, next iterator, malformed records with their error) of a GetRecords body.

    A body that is not a GetRecords page at all (not JSON, not an object, Records not a list,
    NextShardIterator not a string) raises :class:`TransientError`: the page is read again
    from the same iterator, as after any failed call.
    """
    records: list[StreamRecord] = []
    malformed: list[tuple[Any, Exception]] = []
    try:
        page = _typed(body)
    except msgspec.ValidationError:
        plain = _plain_page(body)
        for item in plain.get("Records", []):
            try:
                records.append(StreamRecord.from_wire(item, shard_id=shard_id))
            except RecordError as exc:
                malformed.append((item, exc))
        return records, plain.get("NextShardIterator"), malformed
    except msgspec.DecodeError as exc:
        raise TransientError(f"GetRecords answered a body that is not JSON: {exc}") from None
    append = records.append
    for rec in page.Records:
        ddb: Any = rec["dynamodb"]
        lazy = None
        if "NewImage" in ddb:
            lazy = {"NewImage": ddb.pop("NewImage")}
        if "OldImage" in ddb:
            lazy = lazy or {}
            lazy["OldImage"] = ddb.pop("OldImage")
        raw: Any = rec
        # The typed decode checked the types; what is left of from_wire's checks:
        if rec["eventName"] in _EVENT_NAMES and ddb["Keys"] and ddb["SequenceNumber"].isdigit():
            append(StreamRecord(raw, shard_id=shard_id, lazy_images=lazy))
            continue
        try:
            StreamRecord.from_wire(raw, shard_id=shard_id)  # raises, naming the problem
        except RecordError as exc:
            if lazy:
                ddb.update({k: msgspec.json.decode(v) for k, v in lazy.items()})
            malformed.append((raw, exc))
    return records, page.NextShardIterator, malformed
