"""A per-key reorder and dedupe window, for sources that may deliver a change late or twice
(Kinesis Data Streams for DynamoDB: "might appear in a different sequence ... more than
once", DynamoDB developer guide). Pure: the caller passes the time.

Records are held ``window_s`` after they arrive. What is released is always a *prefix* of the
arrivals (the oldest first, at most ``limit``), so a checkpoint at the highest sequence number
released never passes a record still held. Within a release each key's records come out in
creation-time order (ties keep arrival order). A record identical to one already seen (same
eventID, or same key, creation time and images) is dropped and counted.
"""

from __future__ import annotations

import json
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass

from processor.core.records import StreamRecord

__all__ = ["ReorderWindow"]

#: identities remembered for dedupe (oldest forgotten first): a duplicate arriving after this
#: many later changes is delivered again (at least once still holds)
REMEMBER = 100_000


@dataclass(slots=True)
class _Held:
    arrived: float
    record: StreamRecord


class ReorderWindow:
    def __init__(self, window_s: float, *, remember: int = REMEMBER) -> None:
        self.window_s = window_s
        self._held: deque[_Held] = deque()
        self._seen: OrderedDict[object, None] = OrderedDict()
        self._remember = remember
        self.duplicates = 0

    def __len__(self) -> int:
        return len(self._held)

    def add(self, records: Sequence[StreamRecord], now: float) -> None:
        """Hold new arrivals; drop those seen before."""
        for record in records:
            identities = (("event", record.event_id), ("change", _change(record)))
            if any(identity in self._seen for identity in identities):
                self.duplicates += 1
                continue
            for identity in identities:
                self._seen[identity] = None
            while len(self._seen) > 2 * self._remember:
                self._seen.popitem(last=False)
            self._held.append(_Held(now, record))

    def release(self, now: float, *, limit: int, flush: bool = False) -> list[StreamRecord]:
        """The arrivals held ``window_s`` or longer (all with ``flush``), oldest first, at
        most ``limit``; each key's records in creation-time order."""
        out: list[StreamRecord] = []
        while self._held and len(out) < limit:
            if not flush and now - self._held[0].arrived < self.window_s:
                break
            out.append(self._held.popleft().record)
        return _by_creation_per_key(out)


def _change(record: StreamRecord) -> tuple[str, object, str]:
    created = record.raw["dynamodb"].get(
        "ApproximateCreationDateTimeRaw", record.raw["dynamodb"].get("ApproximateCreationDateTime")
    )
    images = json.dumps([record.wire_new_image, record.wire_old_image], sort_keys=True)
    return record.key_id, created, images


def _by_creation_per_key(records: list[StreamRecord]) -> list[StreamRecord]:
    """Each key's records sorted by creation time, placed back into that key's slots."""
    slots: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        slots.setdefault(record.key_id, []).append(index)
    out = list(records)
    for indexes in slots.values():
        if len(indexes) < 2:
            continue
        mine = sorted((records[i] for i in indexes), key=_created)
        for index, record in zip(indexes, mine, strict=True):
            out[index] = record
    return out


def _created(record: StreamRecord) -> float:
    created = record.approximate_creation_time
    return created.timestamp() if created is not None else 0.0
