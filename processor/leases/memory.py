"""The lease store in memory, with the same conditional semantics (dry runs, replays, tests)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Set
from dataclasses import replace

import structlog

from processor.errors import LeaseLostError
from processor.leases.model import Lease
from processor.sources.lineage import Shard

__all__ = ["MemoryLeaseStore"]

log = structlog.get_logger()


class MemoryLeaseStore:
    """The lease store protocol in memory, with the same conditional semantics.

    For dry runs and file replays (nothing to persist), and for tests.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.Lock()
        self.leases: dict[str, Lease] = {}
        self._clock = clock
        self.checkpoints: list[tuple[str, str | None, bool]] = []

    def ensure_table(self) -> None:
        return

    def list_leases(self) -> list[Lease]:
        with self._lock:
            return list(self.leases.values())

    def create_missing(
        self, shards: Iterable[Shard], existing: Set[str], *, from_start: Set[str] = frozenset()
    ) -> None:
        with self._lock:
            for shard in shards:
                self.leases.setdefault(
                    shard.shard_id,
                    Lease(
                        shard.shard_id,
                        None,
                        0,
                        0.0,
                        parent_shard_id=shard.parent_shard_id,
                        adjacent_parent_shard_id=shard.adjacent_parent_shard_id,
                        from_start=shard.shard_id in from_start,
                    ),
                )

    def delete(self, observed: Lease) -> bool:
        with self._lock:
            current = self.leases.get(observed.shard_id)
            if current is None or (
                current.counter,
                current.heartbeat,
                current.finished,
                current.owner,
            ) != (observed.counter, observed.heartbeat, observed.finished, observed.owner):
                return False
            del self.leases[observed.shard_id]
            return True

    def mark_from_start(self, observed: Lease) -> bool:
        with self._lock:
            current = self.leases.get(observed.shard_id)
            if current is None or current.counter != observed.counter or current.checkpoint:
                return False
            self.leases[observed.shard_id] = replace(current, from_start=True)
            return True

    def take(self, observed: Lease, owner: str) -> Lease | None:
        with self._lock:
            current = self.leases.get(observed.shard_id)
            if current is None or current != observed or current.finished:
                return None
            taken = replace(
                current,
                owner=owner,
                counter=current.counter + 1,
                heartbeat=self._clock(),
                handoff_to=None,
            )
            self.leases[observed.shard_id] = taken
            return taken

    def request_handoff(self, observed: Lease, requester: str) -> bool:
        with self._lock:
            current = self.leases.get(observed.shard_id)
            if (
                current is None
                or current.owner != observed.owner
                or current.counter != observed.counter
                or current.handoff_to
            ):
                return False
            self.leases[observed.shard_id] = replace(current, handoff_to=requester)
            return True

    def _check(self, lease: Lease) -> Lease:
        current = self.leases.get(lease.shard_id)
        if current is None or current.owner != lease.owner or current.counter != lease.counter:
            raise LeaseLostError("lease was taken over", shard_id=lease.shard_id)
        return current

    def renew(
        self, lease: Lease, *, lag_s: float | None = None, failure: tuple[str, int] | None = None
    ) -> Lease:
        with self._lock:
            current = replace(
                self._check(lease),
                heartbeat=self._clock(),
                lag_s=lag_s,
                last_error=failure[0] if failure else None,
                failures=failure[1] if failure else 0,
            )
            self.leases[lease.shard_id] = current
            return current

    def checkpoint(
        self,
        lease: Lease,
        sequence_number: str | None,
        *,
        finished: bool,
        window_state: str | None = None,
    ) -> Lease:
        with self._lock:
            current = self._check(lease)
            current = replace(
                current,
                heartbeat=self._clock(),
                finished=finished,
                checkpoint=sequence_number if sequence_number is not None else current.checkpoint,
                window_state=(
                    (window_state or None) if window_state is not None else current.window_state
                ),
            )
            self.leases[lease.shard_id] = current
            self.checkpoints.append((lease.shard_id, sequence_number, finished))
            return current

    def release(self, lease: Lease, *, handoff: bool = False) -> None:
        with self._lock:
            current = self.leases.get(lease.shard_id)
            if current and current.owner == lease.owner and current.counter == lease.counter:
                if handoff:
                    released = replace(current, owner=None, heartbeat=self._clock())
                else:
                    released = replace(current, owner=None, handoff_to=None)
                self.leases[lease.shard_id] = released
