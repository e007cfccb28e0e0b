"""The LeaseStore contract: what the worker relies on, for every lease store.

Each case runs on `MemoryLeaseStore` (dry runs, replays and users' tests) and on
`DynamoDBLeaseStore` against the test backend (moto, or DynamoDB Local under
``make test-dynamodb-local``), so the memory store's answers are the real store's answers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from processor.errors import LeaseLostError
from processor.leases.dynamodb import DynamoDBLeaseStore
from processor.leases.model import Lease, LeaseStore
from processor.sources.lineage import Shard
from processor.testing import MemoryLeaseStore

Clock = list[float]

SHARDS = [
    Shard("s1", None, "1", "9"),
    Shard("s2", None, "10", "19"),
    Shard("s3", "s1", "20", None, adjacent_parent_shard_id="s2"),  # a merge (Kinesis)
]


@pytest.fixture(params=["memory", "dynamodb"])
def make_store(request: pytest.FixtureRequest, unique: str) -> Callable[[Clock], LeaseStore]:
    def build(now: Clock) -> LeaseStore:
        if request.param == "memory":
            return MemoryLeaseStore(clock=lambda: now[0])
        dynamodb: Any = request.getfixturevalue("dynamodb")
        return DynamoDBLeaseStore(
            dynamodb,
            table=f"leases-{unique}",
            application="app",
            stream_arn="arn:aws:dynamodb:us-east-1:1:table/t/stream/x",
            clock=lambda: now[0],
        )

    return build


def by_id(store: LeaseStore) -> dict[str, Lease]:
    return {lease.shard_id: lease for lease in store.list_leases()}


def test_new_leases_are_free_and_keep_their_lineage(
    make_store: Callable[[Clock], LeaseStore],
) -> None:
    """create_missing makes one free lease per shard, both parents kept; again, it is a no-op."""
    store = make_store([1000.0])
    store.ensure_table()
    store.ensure_table()
    store.create_missing(SHARDS, set())
    store.create_missing(SHARDS, set())
    leases = by_id(store)
    assert sorted(leases) == ["s1", "s2", "s3"]
    assert {lease.owner for lease in leases.values()} == {None}
    assert {lease.counter for lease in leases.values()} == {0}
    assert leases["s3"].parent_shard_ids == ("s1", "s2")
    assert leases["s1"].parent_shard_ids == ()


def test_a_lease_moves_only_from_a_fresh_observation(
    make_store: Callable[[Clock], LeaseStore],
) -> None:
    """take bumps the counter; a stale observation takes nothing; the old owner is fenced."""
    now = [1000.0]
    store = make_store(now)
    store.ensure_table()
    store.create_missing(SHARDS, set())
    free = by_id(store)["s1"]
    mine = store.take(free, "a")
    assert mine is not None
    assert (mine.owner, mine.counter) == ("a", 1)
    assert store.take(free, "b") is None
    mine = store.checkpoint(mine, "5", finished=False)
    now[0] = 2000.0
    theirs = store.take(by_id(store)["s1"], "b")
    assert theirs is not None
    assert (theirs.owner, theirs.counter, theirs.checkpoint) == ("b", 2, "5")
    with pytest.raises(LeaseLostError):
        store.checkpoint(mine, "6", finished=False)
    with pytest.raises(LeaseLostError):
        store.renew(mine)
    assert by_id(store)["s1"].checkpoint == "5"


def test_renew_records_heartbeat_lag_and_failures(
    make_store: Callable[[Clock], LeaseStore],
) -> None:
    """A renewal stamps the clock and carries lag and the last error; a clean one clears it."""
    now = [1000.0]
    store = make_store(now)
    store.ensure_table()
    store.create_missing(SHARDS, set())
    lease = store.take(by_id(store)["s2"], "a")
    assert lease is not None
    now[0] = 1005.0
    lease = store.renew(lease, lag_s=2.5, failure=("GetRecords: denied", 3))
    seen = by_id(store)["s2"]
    assert (seen.heartbeat, seen.lag_s, seen.last_error, seen.failures) == (
        1005.0,
        2.5,
        "GetRecords: denied",
        3,
    )
    store.renew(lease, lag_s=0.0)
    seen = by_id(store)["s2"]
    assert (seen.last_error, seen.failures) == (None, 0)


def test_a_finished_lease_keeps_its_checkpoint_and_is_never_taken_again(
    make_store: Callable[[Clock], LeaseStore],
) -> None:
    """checkpoint(finished=True) then release: ownerless, finished, not takeable."""
    store = make_store([1000.0])
    store.ensure_table()
    store.create_missing(SHARDS, set())
    lease = store.take(by_id(store)["s1"], "a")
    assert lease is not None
    done = store.checkpoint(lease, "9", finished=True)
    store.release(done)
    final = by_id(store)["s1"]
    assert (final.owner, final.checkpoint, final.finished) == (None, "9", True)
    assert store.take(final, "b") is None


def test_a_handoff_is_requested_once_and_reserved_for_the_requester(
    make_store: Callable[[Clock], LeaseStore],
) -> None:
    """request_handoff marks a live lease once; the owner's renewal sees it; a release with
    handoff keeps the mark for the requester."""
    now = [1000.0]
    store = make_store(now)
    store.ensure_table()
    store.create_missing(SHARDS, set())
    lease = store.take(by_id(store)["s2"], "a")
    assert lease is not None
    observed = by_id(store)["s2"]
    assert store.request_handoff(observed, "b")
    assert not store.request_handoff(observed, "c")
    lease = store.renew(lease)
    assert lease.handoff_to == "b"
    now[0] = 1001.0
    store.release(lease, handoff=True)
    released = by_id(store)["s2"]
    assert (released.owner, released.handoff_to, released.heartbeat) == (None, "b", 1001.0)


def test_from_start_is_kept_and_marked_only_before_a_checkpoint(
    make_store: Callable[[Clock], LeaseStore],
) -> None:
    store = make_store([1000.0])
    store.ensure_table()
    store.create_missing(SHARDS, set(), from_start={"s3"})
    leases = by_id(store)
    assert (leases["s1"].from_start, leases["s3"].from_start) == (False, True)
    assert store.mark_from_start(leases["s2"])
    assert by_id(store)["s2"].from_start
    taken = store.take(by_id(store)["s1"], "w1")
    assert taken is not None
    store.checkpoint(taken, "5", finished=False)
    assert not store.mark_from_start(by_id(store)["s1"])  # it has a checkpoint: nothing to mark
    assert not by_id(store)["s1"].from_start


def test_a_delete_lands_only_on_the_lease_as_it_was_read(
    make_store: Callable[[Clock], LeaseStore],
) -> None:
    """Cleanup deletes are conditional: a lease taken, renewed, checkpointed or released since
    it was read stays; a lease already gone is not deleted twice."""
    now = [1000.0]
    store = make_store(now)
    store.ensure_table()
    store.create_missing(SHARDS, set())
    observed = by_id(store)
    taken = store.take(observed["s1"], "w1")
    assert taken is not None
    assert not store.delete(observed["s1"])  # taken since it was read
    now[0] += 1
    done = store.checkpoint(taken, "9", finished=True)
    assert not store.delete(taken)  # checkpointed since
    finished = by_id(store)["s1"]
    assert finished.finished
    assert finished == done
    store.release(done)
    assert not store.delete(finished)  # released since (the owner changed)
    released = by_id(store)["s1"]
    assert store.delete(released)
    assert not store.delete(released)  # already gone
    assert "s1" not in by_id(store)
    # a lease that was deleted cannot be taken, renewed or checkpointed any more
    assert store.take(released, "w2") is None
    with pytest.raises(LeaseLostError):
        store.checkpoint(done, "9", finished=True)


def test_window_state_travels_with_the_checkpoint(
    make_store: Callable[[Clock], LeaseStore],
) -> None:
    """Set with a checkpoint, kept by one that gives none, cleared by "" (a shard's end)."""
    store = make_store([1000.0])
    store.ensure_table()
    store.create_missing(SHARDS, set())
    taken = store.take(by_id(store)["s1"], "w1")
    assert taken is not None
    held = store.checkpoint(
        taken, "3", finished=False, window_state="eJyrVkosSVSyUlAqS8wpTgUAJjoFAA=="
    )
    assert by_id(store)["s1"].window_state == "eJyrVkosSVSyUlAqS8wpTgUAJjoFAA=="
    held = store.checkpoint(held, "4", finished=False)
    assert by_id(store)["s1"].window_state == "eJyrVkosSVSyUlAqS8wpTgUAJjoFAA=="
    assert held.window_state == "eJyrVkosSVSyUlAqS8wpTgUAJjoFAA=="
    done = store.checkpoint(held, "9", finished=True, window_state="")
    assert by_id(store)["s1"].window_state is None
    assert done.window_state is None
