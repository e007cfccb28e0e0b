"""Lease cleanup, pure: which leases lineage no longer needs, and which shards are done.

The Java KCL's rule (``cleanupLeasesUponShardCompletion``), recorded in ADR 0024:

* a **finished** lease (checkpointed at the shard's end) goes once every child shard has a
  lease that has started, i.e. holds a checkpoint or is finished itself: nothing will look at
  the parent again;
* a finished lease also goes once its shard has **left the stream** (past the retention);
* an **unfinished** lease is never deleted while its shard is in the stream. Once its shard
  has left the stream, records were trimmed unread: it is reported every pass, and
  ``on_trimmed`` decides. ``"fail"`` keeps the lease (its children stay blocked, as a
  trimmed reader stops); ``"skip"`` deletes it, unless a live owner holds it, so its
  children go on.

``listed`` must come from a DescribeStream / ListShards made **after** the leases were read:
a lease read before the listing began belongs to a shard that was in the stream then, unless
it left. Deletes are conditional on the lease as read (counter, heartbeat, owner, finished),
so a replica that loses a race changes nothing, and a pass is repeatable.

A shard without a lease is given one at discovery unless one of its descendants has a lease
(:func:`shards_to_create`): then it was finished and cleaned up, and recreating it would read
it again from the start.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from processor.leases.model import Lease
from processor.sources.lineage import Shard

__all__ = [
    "CleanupPlan",
    "Deletion",
    "cleaned",
    "lease_states",
    "plan_cleanup",
    "shards_to_create",
]

Reason = Literal["children_started", "left_stream", "trimmed_unread"]


@dataclass(frozen=True, slots=True)
class Deletion:
    lease: Lease
    reason: Reason


@dataclass(frozen=True, slots=True)
class CleanupPlan:
    #: leases to delete now, at most ``limit``, finished ones first
    delete: list[Deletion]
    #: unfinished leases whose shard left the stream: records trimmed unread (reported)
    trimmed_unread: list[Lease]
    #: children that must keep starting at TRIM_HORIZON once their parent's lease is gone
    mark_from_start: list[Lease]
    #: more were due than ``limit`` allowed: the next pass goes on
    more: int = 0
    states: dict[str, int] = field(default_factory=dict)


def _started(lease: Lease) -> bool:
    return lease.finished or lease.checkpoint is not None


def lease_states(
    leases: Iterable[Lease], *, now: float, timeout_s: float, trimmed: int = 0
) -> dict[str, int]:
    """Leases by state for ``dsp_leases``: owned (a live owner), free (no owner, or one that
    stopped renewing), finished; ``trimmed`` (unfinished, shard gone) is counted apart."""
    states: Counter[str] = Counter(owned=0, free=0, finished=0)
    for lease in leases:
        if lease.finished:
            states["finished"] += 1
        elif lease.owner is not None and not lease.expired(now, timeout_s):
            states["owned"] += 1
        else:
            states["free"] += 1
    states["trimmed_unread"] = trimmed
    return dict(states)


def plan_cleanup(
    leases: Sequence[Lease],
    listed: Iterable[Shard],
    *,
    on_trimmed: str,
    now: float,
    timeout_s: float,
    limit: int,
) -> CleanupPlan:
    """Decide one cleanup pass over a lease table snapshot and a later stream listing."""
    in_stream = {s.shard_id: s for s in listed}
    by_id = {lease.shard_id: lease for lease in leases}
    children: dict[str, set[str]] = {}
    items: list[Shard | Lease] = [*in_stream.values(), *leases]
    for item in items:
        for parent in item.parent_shard_ids:
            children.setdefault(parent, set()).add(item.shard_id)

    due: list[Deletion] = []
    trimmed: list[Lease] = []
    marks: dict[str, Lease] = {}
    for lease in sorted(leases, key=lambda item: item.shard_id):
        if lease.finished:
            kids = children.get(lease.shard_id, set())
            if lease.shard_id not in in_stream:
                # its children may not have started; they must still begin at TRIM_HORIZON
                for kid in kids:
                    child = by_id.get(kid)
                    if child is not None and not _started(child) and not child.from_start:
                        marks[kid] = child
                due.append(Deletion(lease, "left_stream"))
            elif kids and all(k in by_id and _started(by_id[k]) for k in kids):
                due.append(Deletion(lease, "children_started"))
        elif lease.shard_id not in in_stream:
            trimmed.append(lease)
            live = lease.owner is not None and not lease.expired(now, timeout_s)
            if on_trimmed == "skip" and not live:
                due.append(Deletion(lease, "trimmed_unread"))
    states = lease_states(leases, now=now, timeout_s=timeout_s, trimmed=len(trimmed))
    bounded = due[: max(limit, 0)]
    # a parent is deleted only after its children were marked (the marks are not bounded:
    # they are few, and each is one small conditional write)
    return CleanupPlan(
        delete=bounded,
        trimmed_unread=trimmed,
        mark_from_start=list(marks.values()),
        more=len(due) - len(bounded),
        states=states,
    )


def cleaned(shards: Iterable[Shard], leases: Iterable[Lease]) -> frozenset[str]:
    """Shards in the stream that have no lease while a descendant has one: they were finished
    and their leases cleaned up (a descendant's lease is only ever created after its
    ancestors'). Lineage counts them as finished; discovery does not recreate them."""
    listed = {s.shard_id: s for s in shards}
    leases = list(leases)
    known = {lease.shard_id for lease in leases}
    children: dict[str, set[str]] = {}
    items: list[Shard | Lease] = [*listed.values(), *leases]
    for item in items:
        for parent in item.parent_shard_ids:
            children.setdefault(parent, set()).add(item.shard_id)
    memo: dict[str, bool] = {}

    def descendant_leased(shard_id: str) -> bool:
        if shard_id not in memo:
            memo[shard_id] = False  # lineage is a DAG; this guards a malformed listing
            memo[shard_id] = any(
                k in known or descendant_leased(k) for k in children.get(shard_id, ())
            )
        return memo[shard_id]

    return frozenset(s for s in listed if s not in known and descendant_leased(s))


def shards_to_create(
    shards: Iterable[Shard], leases: Iterable[Lease]
) -> tuple[list[Shard], frozenset[str]]:
    """Shards that need a lease, parents before children (a crash in the middle leaves no
    child without its parent's lease), and those among them that must start at TRIM_HORIZON
    (a parent is in the stream or in the lease table: we read it, so the child's records
    follow it from its first one). Cleaned-up shards (:func:`cleaned`) are left out."""
    listed = {s.shard_id: s for s in shards}
    leases = list(leases)
    known = {lease.shard_id for lease in leases}
    done = cleaned(listed.values(), leases)
    pending = {s: shard for s, shard in listed.items() if s not in known and s not in done}
    ordered: list[Shard] = []
    placed: set[str] = set()

    def place(shard: Shard) -> None:
        if shard.shard_id in placed:
            return
        placed.add(shard.shard_id)
        for parent in shard.parent_shard_ids:
            if parent in pending:
                place(pending[parent])
        ordered.append(shard)

    for shard_id in sorted(pending):
        place(pending[shard_id])
    from_start = frozenset(
        s.shard_id for s in ordered if any(p in listed or p in known for p in s.parent_shard_ids)
    )
    return ordered, from_start
