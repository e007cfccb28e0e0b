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
from typing import Any

import msgspec
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
_decode_json = msgspec.json.Decoder().decode
_UNSET: Any = object()


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
    try:
        number = _create_decimal(v)
    except ArithmeticError:  # boto3's context refuses some numbers DynamoDB stores
        return _exact_number(v)
    if not number.is_finite():  # DynamoDB stores no NaN/Infinity: the value is malformed
        raise ValueError("not a number DynamoDB can store")
    return number


def _exact_number(text: str) -> Decimal:
    """``Decimal(text)`` for a number DynamoDB can store that boto3's context refuses.

    boto3's ``DYNAMODB_CONTEXT`` traps ``Rounded`` and ``Underflow``, so it fails on legal
    values such as ``"1" + "0" * 44`` (one significant digit, 45 digits of text) or
    ``"9.9999999999999999999999999999999999999E-130"``. DynamoDB's own rules are: at most
    38 significant digits, magnitude from 1E-130 to below 1E+126, or zero.
    """
    number = Decimal(text)
    if not number.is_finite():
        raise ValueError("not a number DynamoDB can store")
    _sign, digits, exponent = number.as_tuple()
    significant = "".join(map(str, digits)).strip("0")
    if not significant:
        return number  # zero, however written
    if len(significant) > 38:
        raise ValueError("more than 38 significant digits")
    assert isinstance(exponent, int)
    magnitude = len(digits) + exponent - 1  # the exponent of the leading digit
    if not -130 <= magnitude <= 125:
        raise ValueError("outside DynamoDB's range (1E-130 to 9.99...E+125)")
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
    return [_fast(item) for item in v]


def _decode_m(v: Any) -> Any:
    return {name: _fast(item) for name, item in v.items()}


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


def _fast(value: Any) -> Any:
    """decode_value for well-formed input: the common tags inline, the rest dispatched."""
    ((tag, raw),) = value.items()
    if tag == "S":
        return raw
    if tag == "N":
        try:
            number = _create_decimal(raw)
        except ArithmeticError:  # boto3's context refuses some numbers DynamoDB stores
            return _exact_number(raw)
        if not number.is_finite():
            raise ValueError("not a number DynamoDB can store")
        return number
    if tag == "M":
        return {name: _fast(item) for name, item in raw.items()}
    if tag == "L":
        return [_fast(item) for item in raw]
    if tag == "BOOL":
        return raw
    if tag == "NULL":
        return None
    return _DECODERS[tag](raw)


def decode_value(value: AttributeValue) -> Any:
    """Decode one AttributeValue in DynamoDB JSON to the value TypeDeserializer returns."""
    if not isinstance(value, Mapping):
        raise RecordError(f"an AttributeValue is a JSON object, got {type(value).__name__}")
    if len(value) != 1:
        tags = sorted(str(tag) for tag in value)[:5]
        raise RecordError(f"an AttributeValue has exactly one type tag, got {tags}")
    ((tag, raw),) = value.items()
    decoder = _DECODERS.get(tag)
    if decoder is None:
        raise RecordError(f"unknown AttributeValue type tag {tag!r}")
    try:
        return decoder(raw)
    except RecordError:
        raise
    except RecursionError:
        raise RecordError(f"{tag} value is nested too deeply") from None
    except (ArithmeticError, TypeError, ValueError, AttributeError, KeyError) as exc:
        raise RecordError(f"malformed {tag} value {raw!r:.60}: {exc}") from exc


def decode_image(image: Image | None) -> dict[str, Any] | None:
    """Decode a whole item (or ``None`` when the stream view does not carry it)."""
    if image is None:
        return None
    if type(image) is not dict and not isinstance(image, Mapping):
        raise RecordError(f"an image is a JSON object, got {type(image).__name__}")
    try:
        return {name: _fast(value) for name, value in image.items()}
    except RecordError:
        raise
    except (ArithmeticError, TypeError, ValueError, AttributeError, KeyError, RecursionError):
        # malformed somewhere: decode again slowly to name the offending value
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
    read from the stream is written back without a decode/encode round trip. A malformed
    value (e.g. ``{}``, which DynamoDB Local writes for an empty map) is a RecordError.
    """
    try:
        return {name: _client_value(value) for name, value in image.items()}
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        for name, value in image.items():  # name the offending attribute
            if not isinstance(value, Mapping) or len(value) != 1:
                raise RecordError(
                    f"attribute {name!r} is not an AttributeValue with one type tag"
                ) from None
        raise RecordError(f"malformed image: {exc}") from None


class StreamRecord:
    """One change, as delivered by DynamoDB Streams (or by Lambda, or read from an archive).

    ``raw`` is the record in DynamoDB JSON exactly as received; it is what the dead-letter
    destination stores and what filter patterns match against.
    """

    __slots__ = (
        "_created",
        "_key_id",
        "_keys",
        "_lazy",
        "_new",
        "_old",
        "_raw",
        "shard_id",
        "tenant",
    )

    _raw: dict[str, Any]
    _lazy: dict[str, Any] | None
    shard_id: str | None
    #: The record's tenant, set by the dispatcher from ``[tenancy]`` (None: no match).
    tenant: str | None

    def __init__(
        self,
        raw: dict[str, Any],
        *,
        shard_id: str | None = None,
        lazy_images: dict[str, Any] | None = None,
    ) -> None:
        self._raw = raw
        self._lazy = lazy_images  # image name -> raw JSON bytes, decoded on first read
        self.shard_id = shard_id
        self.tenant = None
        # decoded views, filled on first read (functools.cached_property locks on 3.11)
        self._keys: Any = _UNSET
        self._new: Any = _UNSET
        self._old: Any = _UNSET
        self._key_id: Any = _UNSET
        self._created: Any = _UNSET

    @property
    def raw(self) -> dict[str, Any]:
        """The whole record in DynamoDB JSON (images included, decoded if still raw)."""
        if self._lazy:
            for name in list(self._lazy):
                self._image(name)
        return self._raw

    def filter_view(self, *, images: bool) -> dict[str, Any]:
        """What filter patterns match against; without ``images`` the images stay raw."""
        return self.raw if images else self._raw

    def _image(self, name: str) -> dict[str, Any] | None:
        ddb = self._raw["dynamodb"]
        image = ddb.get(name)
        if image is None and self._lazy and name in self._lazy:
            try:
                image = _decode_json(self._lazy.pop(name))
            except (msgspec.DecodeError, ValueError) as exc:
                raise RecordError(f"{name} is not valid JSON: {exc}") from exc
            ddb[name] = image
        return image  # type: ignore[no-any-return]

    @classmethod
    def from_wire(
        cls, raw: Any, *, shard_id: str | None = None, lazy_images: dict[str, Any] | None = None
    ) -> StreamRecord:
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
        return cls(raw, shard_id=shard_id, lazy_images=lazy_images)

    # -- identity and position ------------------------------------------------------------

    @property
    def event_id(self) -> str:
        """Unique per change: the idempotency key handed to consumers."""
        return str(self._raw["eventID"])

    @property
    def event_name(self) -> EventName:
        return EventName(self._raw["eventName"])

    @property
    def sequence_number(self) -> str:
        return str(self._raw["dynamodb"]["SequenceNumber"])

    @property
    def sequence_int(self) -> int:
        """The sequence number as an integer: sequence numbers compare numerically."""
        return int(self._raw["dynamodb"]["SequenceNumber"])

    @property
    def approximate_creation_time(self) -> datetime | None:
        """When the change was made (UTC); whole seconds in real DynamoDB Streams."""
        if self._created is _UNSET:
            value = self._raw["dynamodb"].get("ApproximateCreationDateTime")
            if value is None:
                self._created = None
            elif isinstance(value, datetime):  # botocore's parsed form
                self._created = value.astimezone(UTC)
            else:
                self._created = datetime.fromtimestamp(float(value), tz=UTC)
        return self._created  # type: ignore[no-any-return]

    @property
    def event_source_arn(self) -> str | None:
        value = self._raw.get("eventSourceARN")
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
        return int(self._raw["dynamodb"].get("SizeBytes", 0))

    @property
    def stream_view_type(self) -> str | None:
        value = self._raw["dynamodb"].get("StreamViewType")
        return str(value) if value is not None else None

    @property
    def is_ttl_delete(self) -> bool:
        """True for a REMOVE made by DynamoDB's Time to Live, not by a user."""
        identity = self._raw.get("userIdentity")
        return (
            self._raw.get("eventName") == "REMOVE"
            and isinstance(identity, dict)
            and identity.get("type") == "Service"
            and identity.get("principalId") == "dynamodb.amazonaws.com"
        )

    # -- raw (wire-format) images: free -------------------------------------------------------

    @property
    def wire_keys(self) -> dict[str, Any]:
        return self._raw["dynamodb"]["Keys"]  # type: ignore[no-any-return]

    @property
    def wire_new_image(self) -> dict[str, Any] | None:
        return self._image("NewImage")

    @property
    def wire_old_image(self) -> dict[str, Any] | None:
        return self._image("OldImage")

    @property
    def key_id(self) -> str:
        """A stable string for the item's key: records with equal ``key_id`` are one item."""
        if self._key_id is _UNSET:
            self._key_id = "\x1f".join(
                f"{name}\x1e{tag}\x1e{raw}"
                for name, value in sorted(self.wire_keys.items())
                for tag, raw in value.items()
            )
        return self._key_id  # type: ignore[no-any-return]

    # -- decoded views: paid for on first read ------------------------------------------------

    @property
    def keys(self) -> dict[str, Any]:
        if self._keys is _UNSET:
            self._keys = decode_image(self.wire_keys)
        return self._keys  # type: ignore[no-any-return]

    @property
    def new_image(self) -> dict[str, Any] | None:
        if self._new is _UNSET:
            self._new = decode_image(self.wire_new_image)
        return self._new  # type: ignore[no-any-return]

    @property
    def old_image(self) -> dict[str, Any] | None:
        if self._old is _UNSET:
            self._old = decode_image(self.wire_old_image)
        return self._old  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return (
            f"StreamRecord({self._raw.get('eventName')} seq={self.sequence_number} "
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
    try:
        return {name: _plain_value(value) for name, value in image.items()}
    except RecordError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError, ArithmeticError) as exc:
        raise RecordError(f"malformed image: {exc}") from None
