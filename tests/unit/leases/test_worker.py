"""The worker and shard reader against an in-memory stream (a fake of our adapter)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import replace as dc_replace
from typing import Any

from structlog.testing import capture_logs

from processor.core.consumer import RouteStats, StreamInfo
from processor.core.dead_letters import DeadLetter
from processor.core.dispatch import Dispatcher
from processor.core.records import StreamRecord
from processor.core.retry import RetryPolicy
from processor.core.routing import Route
from processor.errors import IteratorExpiredError, StreamError
from processor.leases.model import Lease
from processor.ops.status import render_table, status_rows
from processor.runtime.reader import ReaderSettings, ShardReader
from processor.runtime.targets import PipelineTarget
from processor.runtime.worker import Worker, WorkerSettings
from processor.sources.base import Page
from processor.sources.lineage import Shard
from processor.testing import MemoryLeaseStore, MemorySource, make_record

ARN = "arn:aws:dynamodb:us-east-1:1:table/t/stream/x"


class FakeStreams(MemorySource):
    """The in-memory source, whose iterators can also expire every N-th GetRecords."""

    def __init__(
        self, shards: dict[str, tuple[Shard, list[dict[str, Any]]]], *, expire_every: int = 0
    ) -> None:
        super().__init__(shards, info=StreamInfo(ARN, "t", "NEW_AND_OLD_IMAGES", ("pk",)))
        self.expire_every = expire_every
        self._gets = 0
        self._gets_lock = threading.Lock()

    def get_records(self, iterator: str, *, limit: int, shard_id: str) -> Page:
        with self._gets_lock:
            self._gets += 1
            if self.expire_every and self._gets % self.expire_every == 0:
                raise IteratorExpiredError("expired", shard_id=shard_id)
        return super().get_records(iterator, limit=limit, shard_id=shard_id)


class Collector:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[tuple[str, str, str]] = []  # (key, sequence, shard)

    def __call__(self, records: Sequence[StreamRecord]) -> None:
        with self.lock:
            self.seen.extend((r.keys["pk"], r.sequence_number, r.shard_id or "") for r in records)


class ListSink:
    def __init__(self) -> None:
        self.entries: list[DeadLetter] = []

    def send(self, entries: Sequence[DeadLetter]) -> None:
        self.entries.extend(entries)


def raw(pk: str, seq: int) -> dict[str, Any]:
    return make_record({"pk": {"S": pk}}, sequence_number=str(seq), event_id=f"e{seq}").raw


def make_worker(
    streams: FakeStreams,
    store: MemoryLeaseStore,
    collector: Collector,
    *,
    owner: str = "w1",
    max_records: int = 2,
) -> Worker:
    sink = ListSink()
    stats = {"r": RouteStats()}

    def dispatcher_for(stop: threading.Event) -> Dispatcher:
        return Dispatcher(
            [Route("r", collector)], sink, RetryPolicy(max_retries=0), stats=stats, stop=stop
        )

    return Worker(
        adapter=streams,
        stream_arn=ARN,
        store=store,
        dispatcher_for=dispatcher_for,
        settings=WorkerSettings(
            owner=owner,
            tick_s=0.01,
            lease_scan_interval_s=0.02,  # children are taken as soon as their parents finish
            reader=ReaderSettings(
                get_records_limit=3,
                max_records=max_records,
                poll_interval_min_s=0.01,
                poll_interval_max_s=0.02,
            ),
        ),
    )


def lineage_stream(**kw: Any) -> FakeStreams:
    # parent p (closed) splits into c1, c2 (closed), c1 rolls over into g (open)
    return FakeStreams(
        {
            "p": (Shard("p", None, "1", "9"), [raw("a", 1), raw("b", 2), raw("a", 3)]),
            "c1": (Shard("c1", "p", "10", "19"), [raw("a", 10), raw("a", 11)]),
            "c2": (Shard("c2", "p", "20", "29"), [raw("b", 20), raw("b", 21)]),
            "g": (Shard("g", "c1", "30", None), [raw("a", 30)]),
        },
        **kw,
    )


def test_lineage_every_record_once_and_per_key_order_across_generations() -> None:
    """Children are read after their parent; each record arrives once, in order per key."""
    collector = Collector()
    store = MemoryLeaseStore()
    worker = make_worker(lineage_stream(), store, collector)
    summary = worker.run(stop=threading.Event(), stop_when_idle=0.2)
    sequences = [int(s) for _, s, _ in collector.seen]
    assert sorted(sequences) == [1, 2, 3, 10, 11, 20, 21, 30]
    assert len(sequences) == len(set(sequences))
    for key in ("a", "b"):
        mine = [int(s) for k, s, _ in collector.seen if k == key]
        assert mine == sorted(mine)
    assert summary.shards_finished == 3
    finished = {lease.shard_id for lease in store.list_leases() if lease.finished}
    assert finished == {"p", "c1", "c2"}


def test_a_second_run_delivers_nothing_already_checkpointed() -> None:
    """Restarting with the same lease store resumes after the checkpoints."""
    store = MemoryLeaseStore()
    streams = lineage_stream()
    make_worker(streams, store, Collector()).run(stop=threading.Event(), stop_when_idle=0.2)
    again = Collector()
    make_worker(streams, store, again).run(stop=threading.Event(), stop_when_idle=0.2)
    assert again.seen == []
    assert ("g", "AFTER_SEQUENCE_NUMBER", "30") in streams.iterator_requests


def test_expired_iterators_are_reacquired_without_loss_or_repeats() -> None:
    """With iterators expiring every few calls, all records arrive once, in order."""
    collector = Collector()
    streams = lineage_stream(expire_every=2)
    make_worker(streams, MemoryLeaseStore(), collector).run(
        stop=threading.Event(), stop_when_idle=0.2
    )
    sequences = [int(s) for _, s, _ in collector.seen]
    assert sorted(sequences) == [1, 2, 3, 10, 11, 20, 21, 30]
    assert len(sequences) == len(set(sequences))
    assert any(kind == "AFTER_SEQUENCE_NUMBER" for _, kind, _ in streams.iterator_requests)


def test_a_child_of_a_read_parent_starts_at_trim_horizon_even_with_latest() -> None:
    """starting_position=LATEST applies to new shards only, never to children we must read."""
    streams = lineage_stream()
    store = MemoryLeaseStore()
    collector = Collector()
    worker = make_worker(streams, store, collector)
    object.__setattr__(worker.settings, "starting_position", "LATEST")
    worker.run(stop=threading.Event(), stop_when_idle=0.2)
    kinds = {shard: kind for shard, kind, _ in streams.iterator_requests}
    assert kinds["p"] == "LATEST"
    assert kinds["c1"] == kinds["c2"] == "TRIM_HORIZON"
    assert sorted(int(s) for _, s, _ in collector.seen) == [10, 11, 20, 21, 30]


def test_two_workers_never_read_one_shard_twice() -> None:
    """Two workers on one lease store split the shards; every record arrives exactly once."""
    streams = FakeStreams(
        {
            f"s{i}": (Shard(f"s{i}", None, "1", "9"), [raw(f"k{i}", i * 10 + j) for j in range(3)])
            for i in range(6)
        }
    )
    store = MemoryLeaseStore()
    collector = Collector()
    w1 = make_worker(streams, store, collector, owner="w1")
    w2 = make_worker(streams, store, collector, owner="w2")
    threads = [
        threading.Thread(target=w.run, kwargs={"stop": threading.Event(), "stop_when_idle": 0.3})
        for w in (w1, w2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    sequences = [s for _, s, _ in collector.seen]
    assert len(sequences) == 18 == len(set(sequences))


def test_graceful_stop_checkpoints_and_releases_leases() -> None:
    """On stop, readers end after their batch, and leases are released for a successor."""
    streams = FakeStreams({"open": (Shard("open", None, "1", None), [raw("a", 1), raw("a", 2)])})
    store = MemoryLeaseStore()
    stop = threading.Event()
    collector = Collector()
    worker = make_worker(streams, store, collector)
    thread = threading.Thread(target=worker.run, kwargs={"stop": stop})
    thread.start()
    for _ in range(500):
        if len(collector.seen) == 2:
            break
        threading.Event().wait(0.01)
    stop.set()
    thread.join(5)
    assert not thread.is_alive()
    (lease,) = store.list_leases()
    assert lease.checkpoint == "2"
    assert lease.owner is None


def test_batching_window_fills_batches_across_pages() -> None:
    """With a window, pages of one record are gathered into batches of max_records."""
    records = [raw("k", i) for i in range(1, 11)]
    streams = FakeStreams({"s": (Shard("s", None, "1", "99"), records)})
    sizes: list[int] = []

    def consumer(batch: Sequence[StreamRecord]) -> None:
        sizes.append(len(batch))

    def run(window_s: float) -> list[int]:
        sizes.clear()
        stats = {"r": RouteStats()}
        worker = Worker(
            adapter=streams,
            stream_arn=ARN,
            store=MemoryLeaseStore(),
            dispatcher_for=lambda stop: Dispatcher(
                [Route("r", consumer)], ListSink(), RetryPolicy(), stats=stats, stop=stop
            ),
            settings=WorkerSettings(
                owner="w",
                tick_s=0.01,
                reader=ReaderSettings(
                    get_records_limit=1,
                    max_records=4,
                    max_window_s=window_s,
                    poll_interval_min_s=0.01,
                    poll_interval_max_s=0.02,
                ),
            ),
        )
        worker.run(stop=threading.Event(), stop_when_idle=0.2)
        return list(sizes)

    assert run(0.0) == [1] * 10
    assert run(5.0) == [4, 4, 2]  # the last batch is flushed when the shard ends


def test_a_second_worker_gets_half_the_leases_by_graceful_handoff() -> None:
    """A newcomer asks for leases; the owner finishes its batch and hands them over: 2 and 2,
    and no record is delivered twice."""
    streams = FakeStreams(
        {
            f"s{i}": (
                Shard(f"s{i}", None, "1", None),
                [raw(f"k{i}", i * 100 + j) for j in range(5)],
            )
            for i in range(4)
        }
    )
    store = MemoryLeaseStore()
    collector = Collector()

    def worker(owner: str) -> Worker:
        w = make_worker(streams, store, collector, owner=owner)
        object.__setattr__(w.settings, "renew_interval_s", 0.05)
        object.__setattr__(w.settings, "lease_timeout_s", 5.0)
        return w

    stop1, stop2 = threading.Event(), threading.Event()
    w1, w2 = worker("w1"), worker("w2")
    t1 = threading.Thread(target=w1.run, kwargs={"stop": stop1})
    t1.start()
    for _ in range(300):
        if sum(lease.owner == "w1" for lease in store.list_leases()) == 4:
            break
        threading.Event().wait(0.01)
    t2 = threading.Thread(target=w2.run, kwargs={"stop": stop2})
    t2.start()
    owners: list[str] = []
    for _ in range(500):
        owners = sorted(lease.owner or "-" for lease in store.list_leases())
        if owners == ["w1", "w1", "w2", "w2"]:
            break
        threading.Event().wait(0.01)
    stop1.set()
    stop2.set()
    t1.join(5)
    t2.join(5)
    assert owners == ["w1", "w1", "w2", "w2"]
    assert w1.summary.leases_handed_off == 2
    assert w2.summary.leases_stolen == 2
    sequences = [s for _, s, _ in collector.seen]
    assert len(sequences) == 20 == len(set(sequences))


def test_a_reader_delivers_nothing_while_its_lease_is_unconfirmed() -> None:
    """Self-fencing: with a stale lease confirmation the reader waits; once renewed, it goes on."""
    streams = FakeStreams({"s": (Shard("s", None, "1", "9"), [raw("k", 1), raw("k", 2)])})
    store = MemoryLeaseStore()
    store.create_missing([Shard("s", None, "1", "9")], set())
    lease = store.take(store.list_leases()[0], "me")
    assert lease is not None
    stale: Lease = dc_replace(lease, heartbeat=lease.heartbeat - 100)
    collector = Collector()
    stop = threading.Event()
    reader = ShardReader(
        adapter=streams,
        stream_arn=ARN,
        lease=stale,
        initial_position="TRIM_HORIZON",
        store=store,
        target=PipelineTarget(
            Dispatcher(
                [Route("r", collector)],
                ListSink(),
                RetryPolicy(),
                stats={"r": RouteStats()},
                stop=stop,
            )
        ),
        settings=ReaderSettings(lease_fence_s=5.0, poll_interval_min_s=0.01),
        stop=stop,
    )
    thread = threading.Thread(target=reader.run)
    thread.start()
    threading.Event().wait(0.3)
    assert collector.seen == []  # fenced: nothing delivered on an unconfirmed lease
    reader.lease = store.renew(lease)  # what the worker's renewal does
    thread.join(5)
    assert [s for _, s, _ in collector.seen] == ["1", "2"]


def test_stop_when_idle_waits_for_the_lease_of_a_crashed_run() -> None:
    """A previous run died holding the root shard's lease. The lease has not timed out yet, so
    nothing is takeable, but its owner stopped renewing: the worker must wait for it to expire
    and read the shard, not declare itself idle and exit with nothing done."""
    store = MemoryLeaseStore()
    store.leases["p"] = Lease("p", "crashed", 3, time.time() - 0.5)
    collector = Collector()
    worker = make_worker(lineage_stream(), store, collector)
    object.__setattr__(worker.settings, "lease_timeout_s", 1.0)
    object.__setattr__(worker.settings, "renew_interval_s", 0.2)
    worker.run(stop=threading.Event(), stop_when_idle=0.2)
    assert sorted(int(s) for _, s, _ in collector.seen) == [1, 2, 3, 10, 11, 20, 21, 30]


class RenewalCountingStore(MemoryLeaseStore):
    """Remembers the heartbeat of every renewal."""

    def __init__(self) -> None:
        super().__init__()
        self.renewed_at: list[float] = []

    def renew(self, lease: Lease, **kw: Any) -> Lease:
        renewed = super().renew(lease, **kw)
        self.renewed_at.append(renewed.heartbeat)
        return renewed

    def renewals_after(self, heartbeat: float) -> int:
        return sum(1 for at in list(self.renewed_at) if at > heartbeat)


def test_leases_stay_renewed_while_a_slow_batch_drains_on_shutdown() -> None:
    """Shutdown order: drain, checkpoint, then release. While a batch outlasts the lease
    timeout after SIGTERM, the lease keeps being renewed, so no other replica can take the
    shard mid-batch and deliver it again (issue 15, item 6)."""
    streams = FakeStreams({"open": (Shard("open", None, "1", None), [raw("a", 1)])})
    store = RenewalCountingStore()
    in_batch, release = threading.Event(), threading.Event()

    def slow(records: Sequence[StreamRecord]) -> None:
        in_batch.set()
        release.wait(10)

    worker = Worker(
        adapter=streams,
        stream_arn=ARN,
        store=store,
        dispatcher_for=lambda stop: Dispatcher(
            [Route("r", slow)],
            ListSink(),
            RetryPolicy(max_retries=0),
            stats={"r": RouteStats()},
            stop=stop,
        ),
        settings=WorkerSettings(
            owner="w1",
            tick_s=0.01,
            lease_timeout_s=0.6,
            renew_interval_s=0.1,
            shutdown_deadline_s=10,
            reader=ReaderSettings(poll_interval_min_s=0.01, poll_interval_max_s=0.02),
        ),
    )
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, kwargs={"stop": stop})
    thread.start()
    assert in_batch.wait(5)
    stop.set()  # SIGTERM while the batch is in flight
    (held,) = store.list_leases()
    # renewals go on through the drain (counted, not timed: no wall-clock bound to miss)
    deadline = time.monotonic() + 30
    while store.renewals_after(held.heartbeat) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    (lease,) = store.list_leases()
    assert lease.owner == "w1"
    assert store.renewals_after(held.heartbeat) >= 3, "the lease stopped being renewed"
    release.set()
    thread.join(10)
    assert not thread.is_alive()
    (lease,) = store.list_leases()
    assert lease.checkpoint == "1"
    assert lease.owner is None


# -- a shard that keeps failing (issue 15, item 5) ----------------------------------------------


class DeniedStreams(FakeStreams):
    """GetRecords on ``denied`` fails the way AccessDenied does once translated: a
    non-transient StreamError, every time, until ``allow`` is set."""

    def __init__(self, *args: Any, denied: str, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.denied = denied
        self.allow = threading.Event()
        self.denials = 0

    def get_records(self, iterator: str, *, limit: int, shard_id: str) -> Page:
        if shard_id == self.denied and not self.allow.is_set():
            with self._gets_lock:
                self.denials += 1
            raise StreamError(
                "GetRecords: AccessDeniedException: not authorized to perform dynamodb:GetRecords",
                shard_id=shard_id,
            )
        return super().get_records(iterator, limit=limit, shard_id=shard_id)


def _failing_worker(
    streams: FakeStreams, store: MemoryLeaseStore, sleeps: list[float], **kw: Any
) -> Worker:
    worker = make_worker(streams, store, Collector(), **kw)
    worker.settings = dc_replace(
        worker.settings, reader_restart_base_s=0.02, reader_restart_max_s=0.16
    )

    worker._on_restart_wait = sleeps.append
    return worker


def test_a_failing_reader_restarts_with_capped_exponential_backoff() -> None:
    streams = DeniedStreams({"s": (Shard("s", None, "1", None), [raw("a", 1)])}, denied="s")
    store = MemoryLeaseStore()
    sleeps: list[float] = []
    worker = _failing_worker(streams, store, sleeps)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, kwargs={"stop": stop})
    thread.start()
    deadline = time.monotonic() + 60
    while len(sleeps) < 8 and time.monotonic() < deadline:
        time.sleep(0.01)
    streams.allow.set()  # permission granted: the next restart reads
    deadline = time.monotonic() + 60
    while not store.list_leases()[0].checkpoint and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    thread.join(10)
    assert len(sleeps) >= 8
    # jittered, each at most base * 2^(n-1) and the cap; it grows to the cap, never past
    for n, waited in enumerate(sleeps[:8], start=1):
        assert waited <= min(0.16, 0.02 * 2 ** (n - 1)) + 1e-9
    assert max(sleeps[:8]) > 0.02
    assert streams.denials == len(sleeps)  # one attempt per restart, no hot loop
    (lease,) = store.list_leases()
    assert lease.checkpoint == "1"  # recovered and read


def test_readiness_stays_false_through_restarts_of_a_failing_reader() -> None:
    streams = DeniedStreams({"s": (Shard("s", None, "1", None), [raw("a", 1)])}, denied="s")
    store = MemoryLeaseStore()
    worker = _failing_worker(streams, store, [])
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, kwargs={"stop": stop})
    thread.start()
    try:
        time.sleep(0.5)  # past max_stall_s: every answer from now on must be "not ready"
        answers = []
        for _ in range(100):
            answers.append(worker.ready(max_stall_s=0.3))
            time.sleep(0.01)
        assert not any(ok for ok, _ in answers), [why for ok, why in answers if ok][:3]
        assert "s" in answers[-1][1]
    finally:
        stop.set()
        thread.join(10)


def test_status_carries_the_failing_shard_and_its_last_error() -> None:
    streams = DeniedStreams({"s": (Shard("s", None, "1", None), [raw("a", 1)])}, denied="s")
    store = MemoryLeaseStore()
    worker = _failing_worker(streams, store, [])
    worker.settings = dc_replace(worker.settings, renew_interval_s=0.05)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, kwargs={"stop": stop})
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            leases = store.list_leases()
            if leases and leases[0].last_error is not None:
                break
            time.sleep(0.01)
        (lease,) = store.list_leases()
        assert lease.last_error is not None
        assert "AccessDeniedException" in lease.last_error
        assert lease.failures >= 1
        rows = status_rows([lease], now=time.time())
        assert "AccessDeniedException" in render_table(rows)
        assert rows[0]["failures"] == lease.failures
        streams.allow.set()
        deadline = time.monotonic() + 60
        while store.list_leases()[0].last_error is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert store.list_leases()[0].last_error is None  # read again: cleared
    finally:
        stop.set()
        thread.join(10)


def test_a_replica_without_leases_is_ready_when_others_own_every_shard() -> None:
    """More replicas than shards: the one left without a lease must not block a rollout."""
    streams = FakeStreams({"s": (Shard("s", None, "1", None), [raw("a", 1)])})
    store = MemoryLeaseStore()
    stop = threading.Event()
    first = make_worker(streams, store, Collector(), owner="w1")
    second = make_worker(streams, store, Collector(), owner="w2")
    threads = [threading.Thread(target=w.run, kwargs={"stop": stop}) for w in (first, second)]
    threads[0].start()
    try:
        deadline = time.monotonic() + 60
        while not store.list_leases() or store.list_leases()[0].owner != "w1":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert not second.ready(max_stall_s=5)[0]  # it has not looked yet
        threads[1].start()
        deadline = time.monotonic() + 60
        while not second.ready(max_stall_s=5)[0]:
            assert time.monotonic() < deadline, second.ready(max_stall_s=5)
            time.sleep(0.01)
        assert "no lease" in second.ready(max_stall_s=5)[1]
    finally:
        stop.set()
        for t in threads:
            if t.is_alive() or t.ident:
                t.join(10)


def test_a_merged_shard_is_read_after_both_parents_from_its_beginning() -> None:
    """A merge (Kinesis resharding): the child waits for both parents, then starts at
    TRIM_HORIZON, so each key's changes arrive in order across the merge."""
    streams = FakeStreams(
        {
            "p1": (Shard("p1", None, "1", "3"), [raw("a", 1), raw("b", 2), raw("a", 3)]),
            "p2": (Shard("p2", None, "4", "5"), [raw("c", 4), raw("c", 5)]),
            "m": (
                Shard("m", "p1", "10", None, adjacent_parent_shard_id="p2"),
                [raw("a", 10), raw("c", 11), raw("b", 12)],
            ),
        }
    )
    store, collector = MemoryLeaseStore(), Collector()
    worker = make_worker(streams, store, collector)
    object.__setattr__(worker.settings, "starting_position", "TRIM_HORIZON")
    worker.run(stop=threading.Event(), stop_when_idle=0.2)
    order = [int(s) for _, s, _ in collector.seen]
    assert sorted(order) == [1, 2, 3, 4, 5, 10, 11, 12]
    first_child = order.index(10)
    assert set(order[:first_child]) == {1, 2, 3, 4, 5}
    kinds = {shard: kind for shard, kind, _ in streams.iterator_requests}
    assert kinds["m"] == "TRIM_HORIZON"
    assert by_shard(store)["m"].parent_shard_ids == ("p1", "p2")


def by_shard(store: MemoryLeaseStore) -> dict[str, Lease]:
    return {lease.shard_id: lease for lease in store.list_leases()}


def test_a_reorder_window_restores_each_keys_order_drops_duplicates_and_checkpoints_safely() -> (
    None
):
    """Kinesis may deliver a change late or twice. With a reorder window each key's changes
    reach the routes in creation order, exact duplicates are dropped, and the checkpoint is
    the highest position handled."""

    def kds(key: str, seq: int, created: float, event_id: str) -> dict[str, Any]:
        image = {"pk": {"S": key}, "created": {"N": str(created)}}
        record = make_record(
            {"pk": {"S": key}},
            event_name="MODIFY",
            new_image=image,
            sequence_number=str(seq),
            created=created,
            event_id=event_id,
        )
        return record.raw

    arrivals = [
        kds("a", 1, 102.0, "a2"),  # a's second change arrives first
        kds("b", 2, 100.0, "b1"),
        kds("a", 3, 101.0, "a1"),
        kds("a", 4, 102.0, "a2"),  # the same change again
        kds("a", 5, 100.5, "a0"),  # a's first change arrives last
    ]
    streams = FakeStreams({"s": (Shard("s", None, "1", "5"), arrivals)})
    store, collector = MemoryLeaseStore(), Collector()
    worker = make_worker(streams, store, collector, max_records=10)
    reader = dc_replace(worker.settings.reader, reorder_window_s=0.05)
    object.__setattr__(worker.settings, "reader", reader)
    worker.run(stop=threading.Event(), stop_when_idle=0.2)
    assert [s for k, s, _ in collector.seen if k == "a"] == ["5", "3", "1"]  # creation order
    assert [s for k, s, _ in collector.seen if k == "b"] == ["2"]
    assert len(collector.seen) == 4  # the duplicate of a2 is dropped
    # the batch's highest position (5), not its last record (a's latest change, seq 1)
    assert collector.seen[-1][1] == "1"
    checkpoints = [(seq, finished) for _, seq, finished in store.checkpoints]
    assert checkpoints == [("5", True)]  # the handled batch's write joined the shard's end


def test_a_thousand_shards_are_read_by_a_bounded_number_of_threads() -> None:
    """1,000 owned shards, 8 reader threads: every record arrives once and in order per key,
    and the process never runs more threads than the pool's bound (plus the fixed ones: the
    pool's scheduler, the renewal pool), however many shards it owns."""
    shards = {
        f"s{n:04d}": (
            Shard(f"s{n:04d}", None, str(n * 10 + 1), None),  # open: polled until stopped
            [raw(f"k{n % 50}", n * 10 + 1), raw(f"k{n % 50}", n * 10 + 2)],
        )
        for n in range(1000)
    }
    streams = FakeStreams(shards)
    store = MemoryLeaseStore()
    collector = Collector()
    worker = make_worker(streams, store, collector)
    worker.settings = dc_replace(
        worker.settings, max_leases=1000, reader_threads=8, lease_scan_interval_s=0.2
    )
    before = threading.active_count()
    most = 0
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, kwargs={"stop": stop})
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while len(collector.seen) < 2000 and time.monotonic() < deadline:
            most = max(most, threading.active_count())
            time.sleep(0.005)
        for _ in range(50):  # and while every shard is polled at its tip
            most = max(most, threading.active_count())
            time.sleep(0.01)
        assert len(worker.state()["shards"]) == 1000
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive()
    sequences = [int(s) for _, s, _ in collector.seen]
    assert sorted(sequences) == sorted(n * 10 + k for n in range(1000) for k in (1, 2))
    for shard_id in ("s0000", "s0500", "s0999"):
        mine = [int(s) for _, s, shard in collector.seen if shard == shard_id]
        assert mine == sorted(mine)
    # the worker's main loop (this test's thread), 8 readers, the scheduler, 16 renewals
    assert most - before <= 1 + 8 + 1 + 16, most - before


def test_by_default_one_process_reads_every_shard_of_a_wide_stream() -> None:
    """150 open shards and default settings: one process takes and reads all of them (on
    main, checkpoints.max_leases defaulted to 100 and 50 shards were silently never read)."""
    streams = FakeStreams(
        {
            f"s{i:03d}": (
                Shard(f"s{i:03d}", None, str(i * 10 + 1), None),
                [raw(f"k{i}", i * 10 + 1)],
            )
            for i in range(150)
        }
    )
    store = MemoryLeaseStore()
    collector = Collector()
    worker = make_worker(streams, store, collector)
    assert worker.settings.max_leases is None
    summary = worker.run(stop=threading.Event(), stop_when_idle=0.3)
    assert summary.leases_taken == 150
    assert len(collector.seen) == 150


def test_a_capped_process_warns_while_ready_shards_stay_unowned() -> None:
    """With an explicit cap below the shard count, the shards left over for longer than a
    lease timeout plus a scan are a WARNING naming the count and the setting, and /readyz's
    body says so (the process stays ready: ADR 0023)."""
    streams = FakeStreams(
        {
            f"s{i}": (Shard(f"s{i}", None, str(i * 10 + 1), None), [raw("a", i * 10 + 1)])
            for i in range(3)
        }
    )
    worker = make_worker(streams, MemoryLeaseStore(), Collector())
    worker.settings = dc_replace(
        worker.settings, max_leases=2, lease_timeout_s=0.2, renew_interval_s=0.05
    )
    stop = threading.Event()
    with capture_logs() as logs:
        thread = threading.Thread(target=worker.run, kwargs={"stop": stop})
        thread.start()
        try:
            deadline = time.monotonic() + 60
            while not any(e["event"] == "shards_unowned" for e in logs):
                assert time.monotonic() < deadline, "no shards_unowned warning"
                time.sleep(0.02)
            ok, why = worker.ready(max_stall_s=5)
        finally:
            stop.set()
            thread.join(30)
    warning = next(e for e in logs if e["event"] == "shards_unowned")
    assert warning["log_level"] == "warning"
    assert (warning["count"], warning["max_leases"]) == (1, 2)
    assert "max_leases" in warning["fix"]
    assert ok
    assert "WARNING: 1 ready shard(s) unowned" in why
    assert "checkpoints.max_leases = 2" in why
