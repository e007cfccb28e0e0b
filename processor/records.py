"""Typed view of one DynamoDB Streams record, decoded on demand.

A record is kept exactly as it arrived on the wire (DynamoDB JSON: binary values as base64
strings, numbers as strings). Nothing is decoded until a consumer asks: ``keys``,
``new_image`` and ``old_image`` are decoded on first read and cached, and their values are
exactly what ``boto3.dynamodb.types.TypeDeserializer`` returns (``Decimal`` in DynamoDB's
context, ``Binary``, ``set``). Consumers that send an image back to AWS use the raw
``wire_*`` attributes and never pay for decoding.
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from functools import cached_property
from typing import Any

from boto3.dynamodb.types import DYNAMODB_CONTEXT, Binary

from processor.errors import RecordError

__all__ = [
    "AttributeValue",
    "EventName",
    "Image",
    "StreamRecord",
    "decode_image",
    "decode_value",
    "plain_image",
    "to_client_image",
]

#: One attribute in DynamoDB JSON, e.g. ``{"S": "abc"}`` or ``{"N": "1.5"}``.
AttributeValue = Mapping[str, Any]
#: An item in DynamoDB JSON: attribute name to AttributeValue.
Image = Mapping[str, AttributeValue]

_create_decimal: Callable[[str], Decimal] = DYNAMODB_CONTEXT.create_decimal


class EventName(enum.StrEnum):
    """What happened to the item."""

    INSERT = "INSERT"
    MODIFY = "MODIFY"
    REMOVE = "REMOVE"


def _b64(value: str | bytes) -> bytes:
    if isinstance(value, bytes):  # already decoded (botocore's parsed form)
        return value
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RecordError(f"binary attribute is not valid base64: {value[:40]!r}") from exc


def _decode_s(v: Any) -> Any:
    return v


def _decode_n(v: Any) -> Any:
    number = _create_decimal(v)
    if not number.is_finite():  # DynamoDB stores no NaN/Infinity: the value is malformed
        raise ValueError("not a number DynamoDB can store")
    return number


def _decode_b(v: Any) -> Any:
    return Binary(_b64(v))


def _decode_ss(v: Any) -> Any:
    return set(v)


def _decode_ns(v: Any) -> Any:
    return {_decode_n(n) for n in v}


def _decode_bs(v: Any) -> Any:
    return {Binary(_b64(b)) for b in v}


def _decode_bool(v: Any) -> Any:
    return v


def _decode_null(v: Any) -> Any:
    return None


def _decode_l(v: Any) -> Any:
    return [decode_value(item) for item in v]


def _decode_m(v: Any) -> Any:
    return {name: decode_value(item) for name, item in v.items()}


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "S": _decode_s,
    "N": _decode_n,
    "B": _decode_b,
    "SS": _decode_ss,
    "NS": _decode_ns,
    "BS": _decode_bs,
    "BOOL": _decode_bool,
    "NULL": _decode_null,
    "L": _decode_l,
    "M": _decode_m,
}


def decode_value(value: AttributeValue) -> Any:
    """Decode one AttributeValue in DynamoDB JSON to the value TypeDeserializer returns."""
    if len(value) != 1:
        raise RecordError(f"an AttributeValue has exactly one type tag, got {sorted(value)}")
    ((tag, raw),) = value.items()
    decoder = _DECODERS.get(tag)
    if decoder is None:
        raise RecordError(f"unknown AttributeValue type tag {tag!r}")
    try:
        return decoder(raw)
    except RecordError:
        raise
    except (ArithmeticError, TypeError, ValueError, AttributeError) as exc:
        raise RecordError(f"malformed {tag} value {raw!r:.60}: {exc}") from exc


def decode_image(image: Image | None) -> dict[str, Any] | None:
    """Decode a whole item (or ``None`` when the stream view does not carry it)."""
    if image is None:
        return None
    return {name: decode_value(value) for name, value in image.items()}


def _client_value(value: AttributeValue) -> dict[str, Any]:
    ((tag, raw),) = value.items()
    if tag == "B":
        return {"B": _b64(raw)}
    if tag == "BS":
        return {"BS": [_b64(b) for b in raw]}
    if tag == "L":
        return {"L": [_client_value(v) for v in raw]}
    if tag == "M":
        return {"M": {k: _client_value(v) for k, v in raw.items()}}
    return {tag: raw}


def to_client_image(image: Image) -> dict[str, Any]:
    """The wire image in the form boto3's low-level client takes (binary as bytes).

    Only binary values change; everything else is passed through untouched, so an image
    read from the stream is written back without a decode/encode round trip.
    """
    return {name: _client_value(value) for name, value in image.items()}


class StreamRecord:
    """One change, as delivered by DynamoDB Streams (or by Lambda, or read from an archive).

    ``raw`` is the record in DynamoDB JSON exactly as received; it is what the dead-letter
    destination stores and what filter patterns match against.
    """

    __slots__ = ("__dict__", "raw", "shard_id")

    raw: dict[str, Any]
    shard_id: str | None

    def __init__(self, raw: dict[str, Any], *, shard_id: str | None = None) -> None:
        self.raw = raw
        self.shard_id = shard_id

    @classmethod
    def from_wire(cls, raw: Any, *, shard_id: str | None = None) -> StreamRecord:
        """Wrap a wire record, checking the fields every consumer relies on.

        A record missing them raises :class:`RecordError` (it goes to the dead-letter
        destination with that reason).
        """
        if not isinstance(raw, dict):
            raise RecordError(f"a stream record is a JSON object, got {type(raw).__name__}")
        ddb = raw.get("dynamodb")
        if not isinstance(ddb, dict):
            raise RecordError("stream record has no 'dynamodb' object")
        seq = ddb.get("SequenceNumber")
        if not isinstance(seq, str) or not seq.isdigit():
            raise RecordError(f"stream record has no valid dynamodb.SequenceNumber: {seq!r}")
        if raw.get("eventName") not in EventName.__members__:
            raise RecordError(
                f"eventName {raw.get('eventName')!r} is not INSERT, MODIFY or REMOVE",
                sequence_number=seq,
            )
        if not isinstance(ddb.get("Keys"), dict) or not ddb["Keys"]:
            raise RecordError("stream record has no dynamodb.Keys", sequence_number=seq)
        if not isinstance(raw.get("eventID"), str):
            raise RecordError("stream record has no eventID", sequence_number=seq)
        return cls(raw, shard_id=shard_id)

    # -- identity and position ------------------------------------------------------------

    @property
    def event_id(self) -> str:
        """Unique per change: the idempotency key handed to consumers."""
        return str(self.raw["eventID"])

    @property
    def event_name(self) -> EventName:
        return EventName(self.raw["eventName"])

    @property
    def sequence_number(self) -> str:
        return str(self.raw["dynamodb"]["SequenceNumber"])

    @property
    def sequence_int(self) -> int:
        """The sequence number as an integer: sequence numbers compare numerically."""
        return int(self.raw["dynamodb"]["SequenceNumber"])

    @cached_property
    def approximate_creation_time(self) -> datetime | None:
        """When the change was made (UTC); whole seconds in real DynamoDB Streams."""
        value = self.raw["dynamodb"].get("ApproximateCreationDateTime")
        if value is None:
            return None
        if isinstance(value, datetime):  # botocore's parsed form
            return value.astimezone(UTC)
        return datetime.fromtimestamp(float(value), tz=UTC)

    @property
    def event_source_arn(self) -> str | None:
        value = self.raw.get("eventSourceARN")
        return str(value) if value is not None else None

    @property
    def table_name(self) -> str | None:
        """The source table, from ``eventSourceARN`` when the record carries one."""
        arn = self.event_source_arn
        if not arn or ":table/" not in arn:
            return None
        return arn.split(":table/", 1)[1].split("/", 1)[0]

    @property
    def size_bytes(self) -> int:
        return int(self.raw["dynamodb"].get("SizeBytes", 0))

    @property
    def stream_view_type(self) -> str | None:
        value = self.raw["dynamodb"].get("StreamViewType")
        return str(value) if value is not None else None

    @property
    def is_ttl_delete(self) -> bool:
        """True for a REMOVE made by DynamoDB's Time to Live, not by a user."""
        identity = self.raw.get("userIdentity")
        return (
            self.raw.get("eventName") == "REMOVE"
            and isinstance(identity, dict)
            and identity.get("type") == "Service"
            and identity.get("principalId") == "dynamodb.amazonaws.com"
        )

    # -- raw (wire-format) images: free -------------------------------------------------------

    @property
    def wire_keys(self) -> dict[str, Any]:
        return self.raw["dynamodb"]["Keys"]  # type: ignore[no-any-return]

    @property
    def wire_new_image(self) -> dict[str, Any] | None:
        return self.raw["dynamodb"].get("NewImage")  # type: ignore[no-any-return]

    @property
    def wire_old_image(self) -> dict[str, Any] | None:
        return self.raw["dynamodb"].get("OldImage")  # type: ignore[no-any-return]

    @cached_property
    def key_id(self) -> str:
        """A stable string for the item's key: records with equal ``key_id`` are one item."""
        return "\x1f".join(
            f"{name}\x1e{tag}\x1e{raw}"
            for name, value in sorted(self.wire_keys.items())
            for tag, raw in value.items()
        )

    # -- decoded views: paid for on first read ------------------------------------------------

    @cached_property
    def keys(self) -> dict[str, Any]:
        decoded = decode_image(self.wire_keys)
        assert decoded is not None
        return decoded

    @cached_property
    def new_image(self) -> dict[str, Any] | None:
        return decode_image(self.wire_new_image)

    @cached_property
    def old_image(self) -> dict[str, Any] | None:
        return decode_image(self.wire_old_image)

    def __repr__(self) -> str:
        return (
            f"StreamRecord({self.raw.get('eventName')} seq={self.sequence_number} "
            f"keys={self.wire_keys!r})"
        )


def _plain_value(value: AttributeValue) -> Any:
    ((tag, raw),) = value.items()
    if tag in {"S", "B", "BOOL"}:  # binary stays base64, as on the wire
        return raw
    if tag == "N":
        return Decimal(raw)
    if tag == "NULL":
        return None
    if tag == "SS":
        return sorted(raw)
    if tag == "NS":
        return sorted(Decimal(n) for n in raw)
    if tag == "BS":
        return sorted(raw, key=_b64)  # ordered by the bytes, shown as base64
    if tag == "L":
        return [_plain_value(v) for v in raw]
    if tag == "M":
        return {k: _plain_value(v) for k, v in raw.items()}
    raise RecordError(f"unknown AttributeValue type tag {tag!r}")


def plain_image(image: Image | None) -> dict[str, Any] | None:
    """The image as plain JSON values: exact Decimals, sets as sorted lists, binary base64.

    Built straight from the wire form (no TypeDeserializer round trip); encode the Decimals
    as JSON numbers (``msgspec.json.Encoder(decimal_format="number")``) to keep precision.
    """
    if image is None:
        return None
    return {name: _plain_value(value) for name, value in image.items()}
