"""Which leases to take, and the lease store's conditional semantics (in memory)."""

from __future__ import annotations

import pytest

from processor.errors import LeaseLostError
from processor.leases.model import Lease
from processor.leases.policy import lease_to_steal, leases_to_take
from processor.sources.lineage import Shard
from processor.testing import MemoryLeaseStore


def lease(shard_id: str, owner: str | None = None, heartbeat: float = 0.0, **kw: object) -> Lease:
    return Lease(shard_id, owner, 1, heartbeat, **kw)  # type: ignore[arg-type]


def test_free_leases_of_ready_shards_are_taken_first_then_expired_ones() -> None:
    """Unowned leases come first, then those whose owner stopped renewing."""
    leases = [
        lease("s3", owner="other", heartbeat=0.0),  # expired
        lease("s1"),
        lease("s2", owner="other", heartbeat=95.0),  # alive
        lease("s4"),
    ]
    chosen = leases_to_take(
        leases, {"s1", "s2", "s3", "s4"}, owner="me", now=100.0, timeout_s=30, limit=10
    )
    assert [c.shard_id for c in chosen] == ["s1", "s4", "s3"]


def test_unready_finished_and_own_leases_are_not_taken() -> None:
    """Shards not ready (lineage), finished shards and our own leases are skipped."""
    leases = [lease("child"), lease("done", finished=True), lease("mine", owner="me")]
    assert leases_to_take(leases, {"done", "mine"}, owner="me", now=0, timeout_s=30, limit=10) == []


def test_limit_caps_how_many_are_taken() -> None:
    """No more than the room left under max_leases is taken."""
    leases = [lease(f"s{i}") for i in range(5)]
    ready = {f"s{i}" for i in range(5)}
    assert len(leases_to_take(leases, ready, owner="me", now=0, timeout_s=30, limit=2)) == 2
    assert leases_to_take(leases, ready, owner="me", now=0, timeout_s=30, limit=0) == []


def test_a_stale_observation_cannot_take_a_lease() -> None:
    """Taking is conditional on the lease being unchanged since it was read."""
    store = MemoryLeaseStore(clock=lambda: 10.0)
    store.create_missing([Shard("s", None, "1", None)], set())
    observed = store.list_leases()[0]
    assert store.take(observed, "a") is not None
    assert store.take(observed, "b") is None


def test_checkpoint_after_takeover_raises_lease_lost() -> None:
    """Once another owner took the lease, the old owner's checkpoint is refused."""
    now = [0.0]
    store = MemoryLeaseStore(clock=lambda: now[0])
    store.create_missing([Shard("s", None, "1", None)], set())
    mine = store.take(store.list_leases()[0], "a")
    assert mine is not None
    now[0] = 100.0
    theirs = store.take(store.list_leases()[0], "b")
    assert theirs is not None
    assert theirs.counter == mine.counter + 1
    with pytest.raises(LeaseLostError):
        store.checkpoint(mine, "5", finished=False)
    with pytest.raises(LeaseLostError):
        store.renew(mine)


def owned(owner: str, *ids: str, heartbeat: float = 100.0) -> list[Lease]:
    return [Lease(i, owner, 1, heartbeat) for i in ids]


def test_a_newcomer_steals_one_lease_from_the_busiest_owner() -> None:
    """With 4 shards on one owner, a second replica takes one at a time until 2 and 2."""
    leases = owned("a", "s1", "s2", "s3", "s4")
    ready = {"s1", "s2", "s3", "s4"}
    steal = lease_to_steal(leases, ready, owner="b", now=100.0, timeout_s=30)
    assert steal is not None
    assert steal.owner == "a"
    leases = owned("a", "s1", "s2", "s3") + owned("b", "s4")
    assert lease_to_steal(leases, ready, owner="b", now=100.0, timeout_s=30) is not None
    leases = owned("a", "s1", "s2") + owned("b", "s3", "s4")
    assert lease_to_steal(leases, ready, owner="b", now=100.0, timeout_s=30) is None


def test_three_replicas_converge_on_a_third_each() -> None:
    """Repeated single steals spread 6 shards as 2/2/2, never moving a lease back and forth."""
    ids = [f"s{i}" for i in range(6)]
    holders = dict.fromkeys(ids, "a")
    for _ in range(10):
        moved = False
        for me in ("b", "c"):
            leases = [Lease(i, o, 1, 100.0) for i, o in holders.items()]
            steal = lease_to_steal(leases, set(ids), owner=me, now=100.0, timeout_s=30)
            if steal is not None:
                holders[steal.shard_id] = me
                moved = True
        if not moved:
            break
    counts = sorted(list(holders.values()).count(o) for o in "abc")
    assert counts == [2, 2, 2]


def test_no_stealing_when_balanced_or_uneven_by_one() -> None:
    """3 shards over 2 owners stays 2/1: a difference of one is balanced."""
    leases = owned("a", "s1", "s2") + owned("b", "s3")
    assert lease_to_steal(leases, {"s1", "s2", "s3"}, owner="b", now=100.0, timeout_s=30) is None


def test_expired_owners_do_not_count_as_replicas() -> None:
    """A dead owner's leases are taken as expired, not balanced against."""
    leases = owned("dead", "s1", "s2", heartbeat=0.0)
    assert lease_to_steal(leases, {"s1", "s2"}, owner="b", now=100.0, timeout_s=30) is None
