"""Transforms used by the batch_write tests (importable as package.module:callable)."""

from __future__ import annotations

from typing import Any

from consumers.batch_write import Delete, Put
from processor.core.records import EventName, StreamRecord


def project(record: StreamRecord) -> Any:
    """Orders by tenant: skip drafts, delete on REMOVE, else a small projection."""
    if record.event_name is EventName.REMOVE:
        return Delete({"pk": record.keys["pk"], "sk": record.keys["sk"]})
    image = record.new_image or {}
    if image.get("status") == "draft":
        return None
    return Put({"pk": record.keys["pk"], "sk": record.keys["sk"], "total": image.get("total")})


COLLECTED: list[list[StreamRecord]] = []


def collect(records: list[StreamRecord]) -> None:
    """A custom consumer: records every batch it is given."""
    COLLECTED.append(list(records))


POISON_SEEN: list[str] = []


def poison(records: list[StreamRecord]) -> None:
    """A custom consumer that can never handle the item with sk == "POISON"."""
    if any(r.keys["sk"] == "POISON" for r in records):
        raise ValueError("cannot handle the poison order")
    POISON_SEEN.extend(r.sequence_number for r in records)


OTHER: list[list[StreamRecord]] = []


def collect_other(records: list[StreamRecord]) -> None:
    """A second custom consumer, for route selection tests."""
    OTHER.append(list(records))
