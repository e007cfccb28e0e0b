"""Typed view of one DynamoDB Streams record, decoded on demand.

A record is kept exactly as it arrived on the wire (DynamoDB JSON: binary values as base64
strings, numbers as strings). Nothing is decoded until a consumer asks: ``keys``,
``new_image`` and ``old_image`` are decoded on first read and cached, and their values are
exactly what ``boto3.dynamodb.types.TypeDeserializer`` returns (``Decimal`` in DynamoDB's
context, ``Binary``, ``set``). Consumers that send an image back to AWS use the raw
``wire_*`` attributes and never pay for decoding.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

import msgspec

from processor.core.values import decode_image, decode_image_json, decode_json
from processor.errors import RecordError

__all__ = ["EventName", "StreamRecord"]


_UNSET: Any = object()


class EventName(enum.StrEnum):
    """What happened to the item."""

    INSERT = "INSERT"
    MODIFY = "MODIFY"
    REMOVE = "REMOVE"


#: the names a record may carry (``EventName.__members__`` builds a mapping proxy per call)
_EVENT_NAMES = frozenset(EventName.__members__)


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
                image = decode_json(self._lazy.pop(name))
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
        name = raw.get("eventName")
        if not isinstance(name, str) or name not in _EVENT_NAMES:
            raise RecordError(
                f"eventName {name!r} is not INSERT, MODIFY or REMOVE",
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
    def version(self) -> str:
        """What orders one item's changes, as a string (compare versions of one source):
        the sequence number on DynamoDB Streams, where an item's changes are in order; on
        Kinesis Data Streams for DynamoDB, whose positions are not versions, the creation time
        in µs, then the position as tie-breaker (``k`` first: written after a switch from
        DynamoDB Streams, they win)."""
        ddb = self._raw["dynamodb"]
        created = ddb.get("ApproximateCreationDateTimeRaw")
        if created is None:  # 21 to 40 digits: zero-padded to 40 they compare as strings
            return self.sequence_number.zfill(40)
        scale = 1 if ddb.get("ApproximateCreationDateTimePrecision") == "MICROSECOND" else 1000
        return f"k{int(created) * scale:020d}.{self.sequence_number.zfill(60)}"

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

    def _decoded(self, name: str) -> dict[str, Any] | None:
        """An image as TypeDeserializer gives it. Still in its JSON bytes, it is decoded
        straight from them (the bytes stay, should its DynamoDB JSON be wanted later)."""
        lazy = self._lazy  # an image leaves it once its DynamoDB JSON is materialized
        if lazy and name in lazy:
            image = decode_image_json(lazy[name])
            if image is not None:
                return image
            # not taken: decoded as before, with the same values and errors
        return decode_image(self._image(name))

    @property
    def new_image(self) -> dict[str, Any] | None:
        if self._new is _UNSET:
            self._new = self._decoded("NewImage")
        return self._new  # type: ignore[no-any-return]

    @property
    def old_image(self) -> dict[str, Any] | None:
        if self._old is _UNSET:
            self._old = self._decoded("OldImage")
        return self._old  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return (
            f"StreamRecord({self._raw.get('eventName')} seq={self.sequence_number} "
            f"keys={self.wire_keys!r})"
        )
