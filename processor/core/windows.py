"""Tumbling windows with state, per shard (ADR 0025).

A route with ``tumbling_window_s`` hands its consumer the records of one window at a time
with the window's state: ``handle(records, window) -> new state``. Windows are aligned to
the epoch and a record belongs to the window of its ``ApproximateCreationDateTime`` (the
time DynamoDB Streams gives; a replay puts every record in the same window again). The
window is per shard, as in Lambda: a shard's end closes its open window (``is_shard_end``)
and its children start with empty state.

A window is *final* (``is_final``; the consumer emits its aggregate, and the next window
starts empty) when a record of a later window arrives, when the shard ends, or when the
reader is caught up and the window ended :data:`CLOSE_GRACE_S` ago by the wall clock. A
record created in a window already closed counts in the next open one. A window with no
records is never called.

The states of a shard's windows are written with the shard's checkpoint, in the same
conditional write, so after a crash the state and the position agree and no record is
counted twice. A final call can be repeated after a crash (it ran, the checkpoint did not),
so what it emits must be idempotent: a key per window and shard.
"""

from __future__ import annotations

import base64
import json
import math
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from processor.core.records import StreamRecord
from processor.errors import RecordError

__all__ = [
    "CLOSE_GRACE_S",
    "MAX_STATE_BYTES",
    "MAX_STORED_BYTES",
    "TumblingWindows",
    "Window",
    "check_state",
]

#: a caught-up reader closes a window this long after its end (records reach the stream a
#: moment after they are made)
CLOSE_GRACE_S = 2.0
#: a window's state as JSON, at most (Lambda's limit)
MAX_STATE_BYTES = 1024 * 1024
#: every window state of a shard, compressed, at most: it travels in the lease item, whose
#: limit is DynamoDB's 400 KB
MAX_STORED_BYTES = 350_000


@dataclass(frozen=True, slots=True)
class Window:
    """What a window consumer is called with, beside the window's records."""

    start: float
    end: float
    shard_id: str | None
    #: the state the previous call of this window returned; empty for a new window
    state: dict[str, Any]
    #: the window is over: emit its aggregate (the next window starts empty)
    is_final: bool = False
    #: the shard ended (the window is final too; the child shard starts fresh)
    is_shard_end: bool = False


def check_state(route: str, state: Any) -> str:
    """The state as JSON; RecordError naming the route when it is not a JSON object or is
    larger than :data:`MAX_STATE_BYTES`."""
    if not isinstance(state, dict):
        raise RecordError(
            f"route {route}: a window consumer returns the window's state, a dict (got "
            f"{type(state).__name__})"
        )
    try:
        text = json.dumps(state, separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise RecordError(f"route {route}: the window state is not JSON: {exc}") from None
    if len(text.encode()) > MAX_STATE_BYTES:
        raise RecordError(
            f"route {route}: the window state is {len(text.encode()):,} bytes as JSON, over "
            f"the {MAX_STATE_BYTES:,} limit; keep aggregates, not records"
        )
    return text


@dataclass
class _Open:
    start: float
    state: dict[str, Any] = field(default_factory=dict)


WindowCall = Callable[[str, list[StreamRecord], Window], dict[str, Any] | None]


class TumblingWindows:
    """One shard's windows, for every windowed route (not thread-safe: one per reader).

    ``call(route, records, window)`` runs the route's consumer (with the engine's retries and
    dead letters) and returns the new state, or None when the call failed for good (the state
    stays as it was).
    """

    def __init__(
        self,
        sizes: dict[str, int],
        call: WindowCall,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sizes = sizes
        self._call = call
        self._clock = clock
        self.shard_id: str | None = None
        self._open: dict[str, _Open] = {}
        self._closed: dict[str, float] = {}  # the start of each route's last closed window

    @property
    def routes(self) -> frozenset[str]:
        return frozenset(self._sizes)

    # -- the checkpoint's share ------------------------------------------------------------------

    def load(self, blob: str | None, shard_id: str | None) -> None:
        """The states written with the shard's last checkpoint (none: all windows empty)."""
        self.shard_id = shard_id
        self._open, self._closed = {}, {}
        if not blob:
            return
        saved = json.loads(zlib.decompress(base64.b64decode(blob)))
        for route, entry in saved.items():
            if route not in self._sizes:
                continue  # a route removed since: its window is dropped
            if entry.get("start") is not None:
                self._open[route] = _Open(float(entry["start"]), dict(entry.get("state") or {}))
            if entry.get("closed") is not None:
                self._closed[route] = float(entry["closed"])

    def dump(self) -> str:
        """Every route's open window and last closed start, for the checkpoint ("" if none)."""
        saved = {}
        for route in self._sizes:
            entry: dict[str, Any] = {}
            if route in self._open:
                entry = {"start": self._open[route].start, "state": self._open[route].state}
            if route in self._closed:
                entry["closed"] = self._closed[route]
            if entry:
                saved[route] = entry
        if not saved:
            return ""
        blob = base64.b64encode(zlib.compress(json.dumps(saved).encode(), 6)).decode()
        if len(blob) > MAX_STORED_BYTES:
            raise RecordError(
                f"routes {', '.join(sorted(saved))}: the window states of shard "
                f"{self.shard_id} are {len(blob):,} bytes compressed, over the "
                f"{MAX_STORED_BYTES:,} that fit in the lease item"
            )
        return blob

    def check_fits(self, route: str, state: dict[str, Any]) -> None:
        """RecordError when the shard's states, with ``state`` as ``route``'s, would not fit
        in the lease item (checked before the state is taken)."""
        current = self._open.get(route)
        if current is None:
            return
        kept = current.state
        current.state = state
        try:
            self.dump()
        finally:
            current.state = kept

    # -- records ---------------------------------------------------------------------------------

    def _start_of(self, route: str, record: StreamRecord) -> float:
        size = self._sizes[route]
        created = record.approximate_creation_time
        when = created.timestamp() if created is not None else self._clock()
        start = float(math.floor(when / size) * size)
        closed = self._closed.get(route)
        if closed is not None and start <= closed:  # late: its window already closed
            start = closed + size
        current = self._open.get(route)
        if current is not None and start < current.start:
            start = current.start  # creation times that step back count in the open window
        return start

    def _window(self, route: str, start: float, state: dict[str, Any], **flags: bool) -> Window:
        return Window(start, start + self._sizes[route], self.shard_id, state, **flags)

    def _final(self, route: str, records: list[StreamRecord], *, shard_end: bool = False) -> None:
        current = self._open.pop(route)
        window = self._window(
            route, current.start, current.state, is_final=True, is_shard_end=shard_end
        )
        self._call(route, records, window)
        self._closed[route] = current.start

    def deliver(self, route: str, records: Sequence[StreamRecord]) -> None:
        """A batch's records for ``route``, in stream order."""
        groups: list[tuple[float, list[StreamRecord]]] = []
        for record in records:
            start = self._start_of(route, record)
            if groups and groups[-1][0] == start:
                groups[-1][1].append(record)
            else:
                groups.append((start, [record]))
        for index, (start, chunk) in enumerate(groups):
            current = self._open.get(route)
            if current is not None and start > current.start:
                self._final(route, [])  # a later window began: the open one is over
                current = None
            if current is None:
                current = self._open[route] = _Open(start)
            if index < len(groups) - 1:  # a later window follows in this batch
                self._final(route, chunk)
                continue
            window = self._window(route, start, current.state)
            state = self._call(route, chunk, window)
            if state is not None:
                current.state = state

    def close_due(self) -> bool:
        """Final calls for windows that ended more than :data:`CLOSE_GRACE_S` ago (the reader
        is caught up); whether any was made."""
        now = self._clock()
        due = [
            route
            for route, current in self._open.items()
            if now >= current.start + self._sizes[route] + CLOSE_GRACE_S
        ]
        for route in due:
            self._final(route, [])
        return bool(due)

    def close_all(self) -> None:
        """The shard ended: every open window's final call, with ``is_shard_end``."""
        for route in list(self._open):
            self._final(route, [], shard_end=True)
        self._closed = {}
