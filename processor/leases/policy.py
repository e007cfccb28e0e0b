"""Which leases to take and which to ask for: pure decisions over a lease table snapshot."""

from __future__ import annotations

from collections.abc import Sequence, Set

import structlog

from processor.leases.model import Lease

__all__ = ["lease_to_steal", "leases_to_take"]

log = structlog.get_logger()


def leases_to_take(
    leases: Sequence[Lease],
    ready: Set[str],
    *,
    owner: str,
    now: float,
    timeout_s: float,
    limit: int,
) -> list[Lease]:
    """Which leases this owner should try to take now (pure).

    Free leases of ready shards first, then expired ones (their owner stopped renewing),
    in shard-id order, at most ``limit``.
    """
    free, expired = [], []
    for lease in sorted(leases, key=lambda item: item.shard_id):
        if lease.finished or lease.shard_id not in ready or lease.owner == owner:
            continue
        if lease.owner is None:
            reserved = lease.handoff_to not in (None, owner)
            if reserved and now - lease.heartbeat <= timeout_s:
                continue  # handed off to another replica: its to take first
            free.append(lease)
        elif lease.expired(now, timeout_s):
            expired.append(lease)
    return (free + expired)[: max(limit, 0)]


def lease_to_steal(
    leases: Sequence[Lease],
    ready: Set[str],
    *,
    owner: str,
    now: float,
    timeout_s: float,
) -> Lease | None:
    """One lease to take from the busiest owner when this owner has less than its share (pure).

    Owners are those holding live leases (plus this one); the share is the ceiling of the
    leasable shards (ready or owned, unfinished) over the owners. At most one lease moves per
    call, from an owner above the share, and only while this owner is below it, so replicas
    converge on about shards/N each without ping-pong.
    """
    live = [
        lease
        for lease in leases
        if not lease.finished and lease.owner is not None and not lease.expired(now, timeout_s)
    ]
    leasable = {
        lease.shard_id for lease in leases if not lease.finished and lease.shard_id in ready
    }
    leasable |= {lease.shard_id for lease in live}
    counts: dict[str, int] = {owner: 0}
    for lease in live:
        holder = lease.owner or ""
        counts[holder] = counts.get(holder, 0) + 1
    share = -(-len(leasable) // len(counts))
    if counts[owner] >= share:
        return None
    busiest = max((o for o in counts if o != owner), key=lambda o: (counts[o], o), default=None)
    if busiest is None or counts[busiest] <= share or counts[busiest] - counts[owner] < 2:
        return None
    if any(lease.handoff_to == owner for lease in live):
        return None  # one handoff at a time
    candidates = sorted(
        (
            lease
            for lease in live
            if lease.owner == busiest and lease.shard_id in ready and lease.handoff_to is None
        ),
        key=lambda lease: lease.shard_id,
    )
    return candidates[-1] if candidates else None
