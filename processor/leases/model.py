"""Leases and checkpoints: who reads which shard, and how far it got (model and protocol).

One item per (application, shard) in the lease table::

    application (HASH)  shard_id (RANGE)  owner  lease_counter  heartbeat  checkpoint
    finished  parent_shard_id  adjacent_parent_shard_id  stream_arn  handoff_to  lag_s  last_error

Ownership changes only through conditional writes that bump ``lease_counter``; a checkpoint
or renewal lands only while ``owner`` and ``lease_counter`` are still what the writer holds.
A replica whose lease was taken over therefore can never move the checkpoint again
(``LeaseLostError``). Semantics are recorded in docs/adr/0003-checkpoints-and-leases.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Set
from dataclasses import dataclass
from typing import Protocol

import structlog

from processor.sources.lineage import Shard

__all__ = ["Lease", "LeaseStore"]

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class Lease:
    shard_id: str
    owner: str | None
    counter: int
    heartbeat: float
    checkpoint: str | None = None
    finished: bool = False
    parent_shard_id: str | None = None
    handoff_to: str | None = None  # another replica asked for this lease (balancing)
    lag_s: float | None = None  # the owner's last reported lag (for `dsp status`)
    #: the owner's reader keeps failing: its last error and how many runs in a row failed
    last_error: str | None = None
    failures: int = 0
    #: the second parent of a merged shard (Kinesis)
    adjacent_parent_shard_id: str | None = None
    #: without a checkpoint, read from TRIM_HORIZON whatever ``starting_position`` says: a
    #: parent was read by us (set when the lease is created; its parent's lease may be gone)
    from_start: bool = False
    #: the shard's tumbling windows (compressed JSON), written with the checkpoint
    window_state: str | None = None

    @property
    def parent_shard_ids(self) -> tuple[str, ...]:
        return tuple(p for p in (self.parent_shard_id, self.adjacent_parent_shard_id) if p)

    def expired(self, now: float, timeout_s: float) -> bool:
        return self.owner is not None and now - self.heartbeat > timeout_s


class LeaseStore(Protocol):
    """Where leases and checkpoints live. Every write is conditional on ownership."""

    def ensure_table(self) -> None: ...

    def list_leases(self) -> list[Lease]: ...

    def create_missing(
        self, shards: Iterable[Shard], existing: Set[str], *, from_start: Set[str] = frozenset()
    ) -> None:
        """A free lease for each shard not in ``existing``, in the order given; those in
        ``from_start`` are marked to begin at TRIM_HORIZON."""

    def delete(self, observed: Lease) -> bool:
        """Delete ``observed`` if nobody changed it since it was read (cleanup); whether it
        did. A lease already gone counts as not deleted."""

    def mark_from_start(self, observed: Lease) -> bool:
        """Record that ``observed``'s shard begins at TRIM_HORIZON (its parent's lease is about
        to go); whether it was written (it is not when the lease changed meanwhile)."""

    def take(self, observed: Lease, owner: str) -> Lease | None:
        """Take ``observed`` if nobody changed it since it was read; None if somebody did."""

    def request_handoff(self, observed: Lease, requester: str) -> bool:
        """Ask the owner of a live lease to hand it over (it releases after its batch)."""

    def renew(
        self, lease: Lease, *, lag_s: float | None = None, failure: tuple[str, int] | None = None
    ) -> Lease:
        """Extend the lease, recording the reader's lag and its failure (last error, runs in a
        row that failed; None clears it); the answer carries ``handoff_to``."""

    def checkpoint(
        self,
        lease: Lease,
        sequence_number: str | None,
        *,
        finished: bool,
        window_state: str | None = None,
    ) -> Lease:
        """Record the position (and, unless None, the windows' state in the same conditional
        write; "" clears it)."""

    def release(self, lease: Lease, *, handoff: bool = False) -> None:
        """Give the lease up; with ``handoff`` it stays reserved for ``handoff_to`` a while."""
