"""How often a reader polls a shard that receives nothing: doubling from the minimum to the
maximum interval, and, when `idle_poll_interval_s` is set, slower still once the shard has
had no records for `idle_after_s` (the cost at rest is mostly these polls, ADR 0006)."""

from __future__ import annotations

import threading

from processor.leases.memory import MemoryLeaseStore
from processor.runtime.reader import ReaderSettings, ShardReader
from processor.runtime.targets import PipelineTarget
from processor.sources.lineage import Shard
from processor.testing import MemorySource


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class CountingStop(threading.Event):
    """A stop event whose waits pass fake time and are recorded; set after ``waits`` waits."""

    def __init__(self, clock: Clock, waits: int) -> None:
        super().__init__()
        self.clock = clock
        self.waits: list[float] = []
        self._limit = waits

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(float(timeout or 0.0))
        self.clock.now += timeout or 0.0
        if len(self.waits) >= self._limit:
            self.set()
        return self.is_set()


def polls(settings: ReaderSettings, waits: int, *, run_after_s: float = 0.0) -> list[float]:
    """The waits between polls of an empty shard; ``run_after_s``: how long after it was made
    the reader starts (a child waiting for its parent, a restart's backoff)."""
    source = MemorySource()
    source.add_shard(Shard("shardId-1", None, "100", None))
    store = MemoryLeaseStore()
    store.create_missing([Shard("shardId-1", None, "100", None)], set())
    lease = store.take(store.list_leases()[0], "w1")
    assert lease is not None
    clock = Clock()
    stop = CountingStop(clock, waits)
    reader = ShardReader(
        adapter=source, stream_arn=source.info.stream_arn, lease=lease,
        initial_position="TRIM_HORIZON", store=store, target=PipelineTarget(None),  # type: ignore[arg-type]
        settings=settings, stop=stop, monotonic=clock, clock=clock,
    )  # fmt: skip
    clock.now += run_after_s
    reader.run()
    return stop.waits


def test_an_empty_shard_is_polled_at_doubling_intervals_up_to_the_maximum() -> None:
    waits = polls(ReaderSettings(poll_interval_min_s=0.25, poll_interval_max_s=2.0), 8)
    assert waits == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0]


def test_a_shard_idle_for_a_while_is_polled_at_the_idle_interval() -> None:
    """After `idle_after_s` without records, the interval grows on to the idle one."""
    settings = ReaderSettings(
        poll_interval_min_s=0.25, poll_interval_max_s=2.0, idle_poll_interval_s=10.0,
        idle_after_s=5.0,
    )  # fmt: skip
    waits = polls(settings, 8)
    # 0.25 + 0.5 + 1 + 2 + 2 = 5.75 s without records: idle from then on
    assert waits == [0.25, 0.5, 1.0, 2.0, 2.0, 4.0, 8.0, 10.0]


def test_by_default_a_shard_quiet_for_a_minute_is_polled_every_10_s() -> None:
    """The defaults (ADR 0030): every 2 s at most for the first minute without records, then
    the interval doubles on to 10 s."""
    waits = polls(ReaderSettings(), 40)
    slower = next(i for i, wait in enumerate(waits) if wait > 2.0)
    assert sum(waits[: slower - 1]) < 60.0 <= sum(waits[:slower])
    assert waits[:slower] == [0.25, 0.5, 1.0] + [2.0] * (slower - 3)
    assert waits[slower:] == [4.0, 8.0] + [10.0] * (40 - slower - 2)


def test_a_reader_that_starts_late_is_not_idle_at_once() -> None:
    """The quiet time counts from when the reader starts reading, not from when it was made:
    a child shard's reader made while its parent is read, or one restarted after a failure,
    polls its new shard as often as any (a month's soak of shard generations fell behind
    when such readers polled every 10 s from their first empty page)."""
    waits = polls(ReaderSettings(), 6, run_after_s=300.0)
    assert waits == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
