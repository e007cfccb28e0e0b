"""DynamoDB's limits on what one write may carry, and the items a transform may return."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.types import TypeSerializer

from processor import RecordError

__all__ = ["Delete", "Put", "item_size"]

MAX_REQUESTS_PER_CALL = 25
MAX_BYTES_PER_CALL = 16 * 1024 * 1024
MAX_ITEM_BYTES = 400 * 1024
MAX_PARTITION_KEY_BYTES = 2048
MAX_SORT_KEY_BYTES = 1024
DELETED_ATTRIBUTE = "_dsp_deleted"
EXPIRES_ATTRIBUTE = "_dsp_expires"
_serialize = TypeSerializer().serialize


@dataclass(frozen=True, slots=True)
class Put:
    """Put this item (plain Python values, as boto3's resource layer takes them)."""

    item: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete the item with this key (plain Python values)."""

    key: Mapping[str, Any]


def value_size(value: Mapping[str, Any]) -> int:
    ((tag, raw),) = value.items()
    if tag == "S":
        return len(raw.encode())
    if tag == "N":
        return (len(str(raw).lstrip("-").replace(".", "").lstrip("0")) + 1) // 2 + 1
    if tag == "B":
        return len(raw) if isinstance(raw, bytes | bytearray) else len(base64.b64decode(raw))
    if tag in ("BOOL", "NULL"):
        return 1
    if tag == "SS":
        return sum(len(v.encode()) for v in raw)
    if tag == "NS":
        return sum(value_size({"N": v}) for v in raw)
    if tag == "BS":
        return sum(value_size({"B": v}) for v in raw)
    if tag == "L":
        return 3 + sum(1 + value_size(v) for v in raw)
    if tag == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(v) for k, v in raw.items())
    return 0


def item_size(item: Mapping[str, Any]) -> int:
    """An item's size as DynamoDB counts it against the 400 KB limit (within a few bytes)."""
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def serialize_item(values: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return {name: _serialize(value) for name, value in values.items()}
    except TypeError as exc:
        raise RecordError(f"transform returned a value DynamoDB cannot store: {exc}") from exc
