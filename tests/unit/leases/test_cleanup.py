"""Lease cleanup (issue 28, ADR 0024): the pure rules, then the worker applying them to an
in-memory stream whose shards roll over and leave after a retention."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from structlog.testing import capture_logs

from processor.core.consumer import RouteStats
from processor.core.dispatch import Dispatcher
from processor.core.retry import RetryPolicy
from processor.core.routing import Route
from processor.errors import TransientError
from processor.leases.cleanup import cleaned, plan_cleanup, shards_to_create
from processor.leases.model import Lease
from processor.runtime.reader import ReaderSettings
from processor.runtime.worker import Worker, WorkerSettings
from processor.sources.lineage import Shard
from processor.testing import MemoryLeaseStore
from tests.unit.leases.test_worker import ARN, Collector, FakeStreams, ListSink, raw

NOW = 1_000_000.0


def lease(shard_id: str, *parents: str, **kw: Any) -> Lease:
    return Lease(
        shard_id,
        kw.pop("owner", None),
        kw.pop("counter", 1),
        kw.pop("heartbeat", NOW - 5),
        parent_shard_id=parents[0] if parents else None,
        adjacent_parent_shard_id=parents[1] if len(parents) > 1 else None,
        **kw,
    )


def shard(shard_id: str, *parents: str, closed: bool = True) -> Shard:
    return Shard(
        shard_id,
        parents[0] if parents else None,
        "1",
        "9" if closed else None,
        parents[1] if len(parents) > 1 else None,
    )


def cleanup(leases: list[Lease], listed: list[Shard], **kw: Any) -> Any:
    return plan_cleanup(
        leases,
        listed,
        on_trimmed=kw.pop("on_trimmed", "fail"),
        now=NOW,
        timeout_s=30,
        limit=kw.pop("limit", 100),
    )


def deleted(plan: Any) -> dict[str, str]:
    return {d.lease.shard_id: d.reason for d in plan.delete}


# -- the rules ---------------------------------------------------------------------------------


def test_a_finished_lease_goes_once_every_child_has_started() -> None:
    stream = [shard("p"), shard("c1", "p", closed=False), shard("c2", "p", closed=False)]
    parent = lease("p", finished=True, checkpoint="9")
    one_started = [parent, lease("c1", "p", checkpoint="12"), lease("c2", "p")]
    assert deleted(cleanup(one_started, stream)) == {}
    both = [parent, lease("c1", "p", checkpoint="12"), lease("c2", "p", finished=True)]
    assert deleted(cleanup(both, stream)) == {"p": "children_started"}
    # a child the stream lists but that has no lease yet has not started
    assert deleted(cleanup([parent, lease("c1", "p", checkpoint="12")], stream)) == {}


def test_a_finished_lease_without_children_stays_while_its_shard_is_in_the_stream() -> None:
    assert deleted(cleanup([lease("p", finished=True)], [shard("p")])) == {}


def test_a_merged_childs_start_frees_both_parents() -> None:
    stream = [shard("a"), shard("b"), shard("m", "a", "b", closed=False)]
    leases = [
        lease("a", finished=True),
        lease("b", finished=True),
        lease("m", "a", "b", checkpoint="5"),
    ]
    assert deleted(cleanup(leases, stream)) == {
        "a": "children_started",
        "b": "children_started",
    }


def test_a_finished_lease_goes_when_its_shard_left_the_stream_and_its_children_keep_the_start() -> (
    None
):
    leases = [lease("p", finished=True), lease("c", "p"), lease("d", "p", checkpoint="3")]
    plan = cleanup(leases, [shard("c", "p", closed=False), shard("d", "p", closed=False)])
    assert deleted(plan) == {"p": "left_stream"}
    # c has not started: it must still begin at TRIM_HORIZON once p's lease is gone
    assert [m.shard_id for m in plan.mark_from_start] == ["c"]


def test_an_unfinished_lease_is_never_deleted_while_its_shard_is_in_the_stream() -> None:
    old = lease("s", heartbeat=0.0, counter=7, checkpoint="4")  # ancient, no owner
    for policy in ("fail", "skip"):
        plan = cleanup([old], [shard("s")], on_trimmed=policy)
        assert deleted(plan) == {}
        assert plan.trimmed_unread == []


def test_an_unfinished_lease_of_a_shard_gone_is_reported_and_on_trimmed_decides() -> None:
    gone = lease("s", checkpoint="4")
    failing = cleanup([gone], [], on_trimmed="fail")
    assert [x.shard_id for x in failing.trimmed_unread] == ["s"]
    assert deleted(failing) == {}
    assert failing.states["trimmed_unread"] == 1
    skipping = cleanup([gone], [], on_trimmed="skip")
    assert deleted(skipping) == {"s": "trimmed_unread"}
    # a live owner is still reading (it meets the trim itself): not deleted under it
    held = lease("s", owner="w2", heartbeat=NOW - 1)
    assert deleted(cleanup([held], [], on_trimmed="skip")) == {}


def test_a_pass_is_bounded_and_says_how_many_are_left() -> None:
    leases = [lease(f"s{i:03}", finished=True) for i in range(250)]
    plan = cleanup(leases, [], limit=100)
    assert len(plan.delete) == 100
    assert plan.more == 150


def test_states_count_owned_free_and_finished() -> None:
    leases = [
        lease("a", owner="w1", heartbeat=NOW - 1),
        lease("b", owner="w2", heartbeat=NOW - 100),  # stopped renewing: free to take
        lease("c"),
        lease("d", finished=True),
    ]
    states = cleanup(leases, [shard(x) for x in "abcd"]).states
    assert states == {"owned": 1, "free": 2, "finished": 1, "trimmed_unread": 0}


def test_a_cleaned_shard_is_not_recreated_even_two_generations_back() -> None:
    # s was cleaned when c started, c when g started: both are still in the stream
    stream = [shard("s"), shard("c", "s"), shard("g", "c", closed=False), shard("n")]
    leases = [lease("g", "c", checkpoint="40")]
    assert cleaned(stream, leases) == {"s", "c"}
    missing, _ = shards_to_create(stream, leases)
    assert [s.shard_id for s in missing] == ["n"]


def test_new_leases_come_parents_first_and_children_of_read_parents_start_at_the_beginning() -> (
    None
):
    # listed children first, as a paginated listing may; "r" has a parent that aged out
    stream = [shard("c2", "p"), shard("c1", "p"), shard("p"), shard("r", "aged-out")]
    missing, from_start = shards_to_create(stream, [])
    order = [s.shard_id for s in missing]
    assert order.index("p") < order.index("c1")
    assert order.index("p") < order.index("c2")
    assert from_start == {"c1", "c2"}


# -- the worker ------------------------------------------------------------------------------


def settings(owner: str = "w1", **kw: Any) -> WorkerSettings:
    return WorkerSettings(
        owner=owner,
        tick_s=0.01,
        lease_scan_interval_s=0.02,
        discovery_interval_s=0.05,
        starting_position=kw.pop("starting_position", "TRIM_HORIZON"),
        reader=ReaderSettings(
            get_records_limit=5,
            max_records=5,
            poll_interval_min_s=0.01,
            poll_interval_max_s=0.02,
            on_trimmed=kw.pop("on_trimmed", "fail"),
        ),
        **kw,
    )


def worker(
    streams: FakeStreams, store: MemoryLeaseStore, collector: Collector, config: WorkerSettings
) -> Worker:
    stats = {"r": RouteStats()}

    def dispatcher_for(stop: threading.Event) -> Dispatcher:
        return Dispatcher(
            [Route("r", collector)], ListSink(), RetryPolicy(max_retries=0), stats=stats, stop=stop
        )

    return Worker(
        adapter=streams, stream_arn=ARN, store=store, dispatcher_for=dispatcher_for, settings=config
    )


class Rolling:
    """Lineages that roll over: each generation closes every open shard and opens its child;
    shards closed ``retention`` generations ago leave the stream."""

    def __init__(self, lineages: int, retention: int) -> None:
        self.streams = FakeStreams({})
        self.retention = retention
        self.seq = 0
        self.open = [f"g0000-l{i}" for i in range(lineages)]
        self.closed: list[list[str]] = []
        self.written: dict[str, list[int]] = {}
        for shard_id in self.open:
            self.streams.add_shard(Shard(shard_id, None, "0", None))

    def write(self, per_shard: int) -> None:
        for lineage, shard_id in enumerate(self.open):
            for _ in range(per_shard):
                self.seq += 1
                key = f"k{lineage}"
                self.written.setdefault(key, []).append(self.seq)
                self.streams.append(shard_id, raw(key, self.seq))

    def roll(self, generation: int) -> None:
        children = []
        for lineage, shard_id in enumerate(self.open):
            self.streams.close(shard_id)
            child = f"g{generation:04}-l{lineage}"
            self.streams.add_shard(Shard(child, shard_id, str(self.seq + 1), None))
            children.append(child)
        self.closed.append(self.open)
        self.open = children
        if len(self.closed) > self.retention:
            for gone in self.closed.pop(0):
                self.streams.remove(gone)

    def listed(self) -> int:
        return len(self.streams.describe(ARN).shards)


def wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_leases_stay_bounded_by_the_live_stream_over_many_generations() -> None:
    """30 generations of 4 lineages (124 shards in all), a retention of 3 generations: the
    lease table stays near the 16 shards the stream lists, and every record is delivered
    once, in order. Before cleanup the table held every shard ever created."""
    rolling = Rolling(lineages=4, retention=3)
    store = MemoryLeaseStore()
    collector = Collector()
    stop = threading.Event()
    run = worker(
        rolling.streams, store, collector, settings(cleanup_interval_s=0.05)
    )  # cleanup every 50 ms
    thread = threading.Thread(target=run.run, kwargs={"stop": stop})
    thread.start()
    peak = 0
    try:
        for generation in range(1, 31):
            rolling.write(3)
            total = rolling.seq
            wait_for(lambda: len(collector.seen) >= total)  # noqa: B023 - read at once
            rolling.roll(generation)
            peak = max(peak, len(store.leases))
        rolling.write(3)
        wait_for(lambda: len(collector.seen) >= rolling.seq)
        wait_for(lambda: len(store.leases) <= 2 * rolling.listed())
    finally:
        stop.set()
        thread.join(10)
    got: dict[str, list[int]] = {}
    for key, sequence, _ in collector.seen:
        got.setdefault(key, []).append(int(sequence))
    assert got == rolling.written  # every record once, each key in order
    assert peak <= 3 * rolling.listed() + 8, (peak, rolling.listed())
    deleted_total = sum(run.state()["leases_deleted"].values())
    assert deleted_total >= 100
    assert run.state()["lease_scan_items"] <= 3 * rolling.listed() + 8


def read_all(streams: FakeStreams, store: MemoryLeaseStore, **kw: Any) -> Collector:
    collector = Collector()
    worker(streams, store, collector, settings(**kw)).run(
        stop=threading.Event(), stop_when_idle=0.3
    )
    return collector


def test_a_child_is_read_after_its_finished_parents_lease_went_and_the_parent_is_not_reread() -> (
    None
):
    """The parent is still in the stream and finished; its lease was deleted (cleanup on
    another replica, or `dsp leases prune`). Before: discovery recreated it and read it again
    from the start, and the child waited for that."""
    streams = FakeStreams(
        {
            "p": (Shard("p", None, "1", "9"), [raw("a", 1), raw("a", 2)]),
            "c": (Shard("c", "p", "10", None), [raw("a", 10)]),
        }
    )
    store = MemoryLeaseStore()
    first = read_all(streams, store, cleanup_interval_s=None)
    assert [s for _, s, _ in first.seen] == ["1", "2", "10"]
    del store.leases["p"]
    streams.append("c", raw("a", 11))
    again = read_all(streams, store, cleanup_interval_s=None)
    assert [s for _, s, _ in again.seen] == ["11"]
    assert "p" not in store.leases


def test_a_merged_child_is_read_after_both_parents_leases_were_deleted() -> None:
    streams = FakeStreams(
        {
            "a": (Shard("a", None, "1", "9"), [raw("x", 1)]),
            "b": (Shard("b", None, "2", "9"), [raw("y", 2)]),
            "m": (Shard("m", "a", "10", None, "b"), [raw("x", 10)]),
        }
    )
    store = MemoryLeaseStore()
    read_all(streams, store, cleanup_interval_s=None)
    del store.leases["a"], store.leases["b"]
    streams.append("m", raw("y", 11))
    again = read_all(streams, store, cleanup_interval_s=None)
    assert [s for _, s, _ in again.seen] == ["11"]
    assert set(store.leases) == {"m"}


def test_a_child_without_a_checkpoint_still_starts_at_its_beginning_after_its_parent_left() -> None:
    """starting_position LATEST: the child of a parent we read starts at TRIM_HORIZON. Once
    the parent left the stream and its lease was cleaned up, a new owner of the still empty
    child must not start at LATEST (the records written meanwhile would be lost)."""
    streams = FakeStreams(
        {
            "p": (Shard("p", None, "1", None), [raw("a", 1)]),
        }
    )
    store = MemoryLeaseStore()
    collector = Collector()
    stop = threading.Event()
    first = worker(streams, store, collector, settings(starting_position="TRIM_HORIZON"))
    thread = threading.Thread(target=first.run, kwargs={"stop": stop})
    thread.start()
    wait_for(lambda: len(collector.seen) == 1)
    streams.close("p")
    streams.add_shard(Shard("c", "p", "5", None))
    wait_for(lambda: store.leases.get("p", Lease("p", None, 0, 0)).finished)
    wait_for(lambda: "c" in store.leases and store.leases["c"].owner is not None)
    stop.set()
    thread.join(10)
    assert store.leases["c"].checkpoint is None  # nothing to read yet
    streams.remove("p")  # past the retention
    streams.append("c", raw("a", 5))
    again = read_all(streams, store, starting_position="LATEST", cleanup_interval_s=0.05)
    assert "p" not in store.leases
    assert [s for _, s, _ in again.seen] == ["5"]


def test_trimmed_unread_leases_are_reported_kept_under_fail_and_deleted_under_skip() -> None:
    def stream() -> tuple[FakeStreams, MemoryLeaseStore]:
        streams = FakeStreams({"c": (Shard("c", "p", "10", None), [raw("a", 10)])})
        store = MemoryLeaseStore()
        # p's lease from an earlier run, unfinished; p has since left the stream
        store.leases["p"] = Lease("p", None, 3, 0.0, checkpoint="4")
        return streams, store

    streams, store = stream()
    with capture_logs() as logs:
        failing = read_all(streams, store, cleanup_interval_s=0.05)
    assert failing.seen == []  # c waits for p: on_trimmed = "fail" stops rather than skip
    assert "p" in store.leases
    errors = [e for e in logs if e["event"] == "leases_trimmed_unread"]
    assert errors
    assert errors[0]["shards"] == ["p"]
    assert errors[0]["log_level"] == "error"

    streams, store = stream()
    skipping = read_all(streams, store, cleanup_interval_s=0.05, on_trimmed="skip")
    assert [s for _, s, _ in skipping.seen] == ["10"]
    assert "p" not in store.leases


def test_start_up_cleans_what_an_older_version_left_with_a_count_in_the_log() -> None:
    streams = FakeStreams({"s9": (Shard("s9", "s8", "90", None), [raw("a", 90)])})
    store = MemoryLeaseStore()
    for i in range(8):  # finished leases of shards long gone
        parent = f"s{i - 1}" if i else None
        store.leases[f"s{i}"] = Lease(f"s{i}", None, 2, 1.0, "5", True, parent_shard_id=parent)
    with capture_logs() as logs:
        collector = read_all(streams, store)  # the default interval: the first pass runs at once
    assert set(store.leases) == {"s9"}
    cleaned_lines = [e for e in logs if e["event"] == "leases_cleaned"]
    assert cleaned_lines[0]["deleted"] == 8
    assert cleaned_lines[0]["by_reason"] == {"left_stream": 8}
    assert [s for _, s, _ in collector.seen] == ["90"]


class FlakyDeletes(MemoryLeaseStore):
    """Every delete fails until ``healed``: throttling, say."""

    def __init__(self) -> None:
        super().__init__()
        self.healed = False
        self.failed = 0

    def delete(self, observed: Lease) -> bool:
        if not self.healed:
            self.failed += 1
            raise TransientError("ThrottlingException: rate exceeded", shard_id=observed.shard_id)
        return super().delete(observed)


def test_a_failed_delete_never_stops_the_worker_and_a_later_pass_finishes_it() -> None:
    streams = FakeStreams({"c": (Shard("c", "p", "10", None), [raw("a", 10)])})
    store = FlakyDeletes()
    store.leases["p"] = Lease("p", None, 2, 1.0, "5", True)
    collector = Collector()
    stop = threading.Event()
    run = worker(streams, store, collector, settings(cleanup_interval_s=0.05))
    thread = threading.Thread(target=run.run, kwargs={"stop": stop})
    with capture_logs() as logs:
        thread.start()
        wait_for(lambda: store.failed >= 2)
        assert thread.is_alive()
        store.healed = True
        wait_for(lambda: "p" not in store.leases)
        stop.set()
        thread.join(10)
    assert [s for _, s, _ in collector.seen] == ["10"]
    assert any(e["event"] == "lease_cleanup_failed" for e in logs)
    assert run.state()["leases_deleted"] == {"left_stream": 1}


@pytest.mark.parametrize("replicas", [2, 3])
def test_replicas_racing_a_cleanup_pass_delete_each_lease_once(replicas: int) -> None:
    """Every replica runs the same pass on the same snapshot: one delete wins per lease, the
    others change nothing (their conditions fail), and the totals add up."""
    store = MemoryLeaseStore()
    for i in range(20):
        store.leases[f"s{i:02}"] = Lease(f"s{i:02}", None, 1, 1.0, "5", True)
    snapshot = store.list_leases()
    wins = 0
    for _ in range(replicas):
        plan = plan_cleanup(snapshot, [], on_trimmed="fail", now=NOW, timeout_s=30, limit=100)
        wins += sum(store.delete(d.lease) for d in plan.delete)
    assert wins == 20
    assert store.leases == {}
