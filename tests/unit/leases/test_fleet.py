"""Several streams' workers on one main loop and one reader pool (processor.runtime.fleet),
against in-memory sources: each stream read whole into its own routes, the pool's bound
shared, the figures per stream and added up, and shutdown releasing every stream's leases."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import structlog
from structlog.testing import capture_logs

from processor.core.consumer import RouteStats, StreamInfo
from processor.core.dead_letters import DeadLetter
from processor.core.dispatch import Dispatcher
from processor.core.records import StreamRecord
from processor.core.retry import RetryPolicy
from processor.core.routing import Route
from processor.runtime.fleet import Fleet, SharedPool
from processor.runtime.reader import ReaderSettings
from processor.runtime.worker import Worker, WorkerSettings
from processor.sources.lineage import Shard
from processor.testing import MemoryLeaseStore, MemorySource, make_record

#: Kinesis numbers every stream's shards alike: the same ids in both streams
SHARDS = ("shardId-000000000000", "shardId-000000000001", "shardId-000000000002")


class Seen:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.keys: list[str] = []

    def __call__(self, records: Sequence[StreamRecord]) -> None:
        with self.lock:
            self.keys.extend(str(r.keys["pk"]) for r in records)


class Letters:
    def send(self, entries: Sequence[DeadLetter]) -> None:
        raise AssertionError(f"nothing should be dead-lettered: {entries}")


def source(name: str) -> MemorySource:
    arn = f"arn:aws:kinesis:us-east-1:1:stream/{name}"
    shards: dict[str, tuple[Shard, list[dict[str, Any]]]] = {}
    for i, shard_id in enumerate(SHARDS):
        records = [
            make_record({"pk": {"S": f"{name}-{i}-{n}"}}, sequence_number=str(100 * i + n)).raw
            for n in range(5)
        ]
        shards[shard_id] = (Shard(shard_id, None, str(100 * i), None), records)
    return MemorySource(shards, info=StreamInfo(arn, name, "NEW_AND_OLD_IMAGES", ("pk",)))


def worker(name: str, store: MemoryLeaseStore, seen: Seen, pool: SharedPool) -> Worker:
    stats = {"r": RouteStats()}
    src = source(name)
    return Worker(
        adapter=src,
        stream_arn=src.info.stream_arn,
        store=store,
        dispatcher_for=lambda stop: Dispatcher(
            [Route("r", seen)], Letters(), RetryPolicy(max_retries=0), stats=stats, stop=stop
        ),
        settings=WorkerSettings(
            owner="w1",
            tick_s=0.01,
            lease_scan_interval_s=0.02,
            reader_threads=1,
            reader=ReaderSettings(poll_interval_min_s=0.01, poll_interval_max_s=0.02),
        ),
        stream=name,
        pool=pool,
    )


def test_two_streams_with_the_same_shard_ids_are_read_whole_on_one_shared_pool() -> None:
    pool = SharedPool(1)
    seen = {"orders": Seen(), "payments": Seen()}
    stores = {"orders": MemoryLeaseStore(), "payments": MemoryLeaseStore()}
    fleet = Fleet({name: worker(name, stores[name], seen[name], pool) for name in seen}, pool=pool)
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        summary = fleet.run(stop=threading.Event(), stop_when_idle=0.2)
    for name, got in seen.items():
        expected = [f"{name}-{i}-{n}" for i in range(len(SHARDS)) for n in range(5)]
        assert sorted(got.keys) == sorted(expected), name  # each its own records, once
    assert summary.records_read == 2 * len(SHARDS) * 5
    assert summary.leases_taken == 2 * len(SHARDS)
    # one pool for both streams, and never more threads than its bound
    used = pool.pool
    assert used is not None
    assert used.size == 1
    assert used.most_busy == 1
    # every stream's leases released at shutdown (a replica takes them at once)
    for store in stores.values():
        assert {lease.owner for lease in store.list_leases()} == {None}
    # each reader's log lines name its stream
    reads = [e for e in logs if e["event"] == "shard_reader_started"]
    assert sorted(e["stream"] for e in reads) == ["orders"] * 3 + ["payments"] * 3


def test_figures_per_stream_and_added_up() -> None:
    pool = SharedPool(2)
    fleet = Fleet(
        {name: worker(name, MemoryLeaseStore(), Seen(), pool) for name in ("orders", "payments")},
        pool=pool,
    )
    fleet.run(stop=threading.Event(), stop_when_idle=0.2)
    per_stream = fleet.states()
    assert sorted(per_stream) == ["orders", "payments"]
    assert per_stream["orders"]["records_read"] == per_stream["payments"]["records_read"] == 15
    total = fleet.state()
    assert total["records_read"] == 30
    assert total["leases_taken"] == 6
    assert total["reader_threads"] == 2  # the one pool's bound, not a sum


def test_readiness_names_each_stream() -> None:
    pool = SharedPool(2)
    fleet = Fleet(
        {name: worker(name, MemoryLeaseStore(), Seen(), pool) for name in ("a", "b")},
        pool=pool,
    )
    ok, why = fleet.ready(60)
    assert not ok  # nothing scanned yet
    assert why.startswith("a: ")
    assert "; b: " in why
