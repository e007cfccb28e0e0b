"""One lease scan's decisions, pure: what to take, whom to ask for a handoff, what is waiting.

The worker lists the lease table, asks :func:`plan` what to do, then does it (conditional
takes, a handoff request). Lineage decides readiness: a shard is ready once its parents are
finished (see :mod:`processor.sources.lineage`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence, Set
from dataclasses import dataclass

from processor.leases.cleanup import cleaned
from processor.leases.model import Lease
from processor.leases.policy import lease_to_steal, leases_to_take
from processor.sources.lineage import Shard, ready_shards

__all__ = ["ScanPlan", "plan"]


@dataclass(frozen=True, slots=True)
class ScanPlan:
    #: leases to take now, best first (at most ``room``)
    take: list[Lease]
    #: a busier replica's lease to ask for, when there is nothing free to take
    steal: Lease | None
    #: ready leases nobody live holds (free or timed out): idle detection and readiness
    takeable: int
    #: ready leases whose owner stopped renewing but that have not timed out yet
    expiring: int
    #: shards checkpointed as finished (a child of one starts at its beginning)
    finished: frozenset[str]


def plan(
    leases: Sequence[Lease],
    shards: Iterable[Shard],
    *,
    owner: str,
    now: float,
    timeout_s: float,
    renew_interval_s: float,
    room: int,
    excluded: Set[str] = frozenset(),
    only: Set[str] | None = None,
) -> ScanPlan:
    """Decide one scan: ``room`` is how many more leases this worker may hold; ``excluded``
    shards it will not take again (trimmed); ``only`` limits it to some shards (replay)."""
    shards = list(shards)
    # a shard whose lease was cleaned up (a descendant has a lease) counts as finished
    finished = frozenset(lease.shard_id for lease in leases if lease.finished) | cleaned(
        shards, leases
    )
    known = {lease.shard_id for lease in leases}
    ready = {s.shard_id for s in ready_shards(shards, finished, known)} - excluded
    if only is not None:
        ready &= only
    takeable = leases_to_take(
        leases, ready, owner=owner, now=now, timeout_s=timeout_s, limit=len(leases)
    )
    expiring = sum(
        1
        for lease in leases
        if not lease.finished
        and lease.shard_id in ready
        and lease.owner not in (None, owner)
        and now - lease.heartbeat > 2 * renew_interval_s
    )
    take = takeable[: max(room, 0)]
    steal = None
    if not take and room > 0:
        steal = lease_to_steal(leases, ready, owner=owner, now=now, timeout_s=timeout_s)
    return ScanPlan(take, steal, len(takeable), expiring, finished)
