"""A pipeline's checkpoints are coalesced (ADR 0028): the batches handled while the reader is
behind are checkpointed with one write, after the last of them is handled, never before the
records it covers are handled; a pending checkpoint is written when the reader catches up,
before the run ends (stopped or failed), sooner once ``COALESCE_S`` passed, and dropped
when the lease is lost."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from processor.core.records import StreamRecord
from processor.errors import LeaseLostError
from processor.leases.memory import MemoryLeaseStore
from processor.leases.model import Lease
from processor.runtime.checkpoints import COALESCE_S
from processor.runtime.reader import ReaderSettings, ShardReader
from processor.runtime.targets import PipelineTarget, ReaderOutcome
from processor.sources.lineage import Shard
from processor.testing import MemorySource, make_record

SHARD = "shardId-1"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Store(MemoryLeaseStore):
    """Records every checkpoint write: (sequence number, finished)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[str | None, bool]] = []
        self.lose = False

    def checkpoint(
        self,
        lease: Lease,
        sequence_number: str | None,
        *,
        finished: bool,
        window_state: str | None = None,
    ) -> Lease:
        if self.lose:
            raise LeaseLostError("taken over")
        self.writes.append((sequence_number, finished))
        return super().checkpoint(
            lease, sequence_number, finished=finished, window_state=window_state
        )


class Pipeline:
    """A dispatcher double: runs ``handle`` on each batch, notes what the store held then."""

    windows = None

    def __init__(self, store: Store, handle: Callable[[list[StreamRecord]], None]) -> None:
        self.store = store
        self.handle = handle
        self.batches: list[tuple[str, str | None]] = []  # (last of batch, stored checkpoint)

    def dispatch(self, batch: list[StreamRecord]) -> None:
        stored = self.store.list_leases()[0].checkpoint
        self.handle(batch)
        self.batches.append((batch[-1].sequence_number, stored))

    def reject_malformed(self, items: Any, shard_id: str) -> None:
        raise AssertionError(items)

    def close(self) -> None:
        pass


def reader_for(
    records: int,
    *,
    closed: bool = True,
    handle: Callable[[list[StreamRecord]], None] = lambda batch: None,
    stop_after_batches: int | None = None,
    clock_step: float = 0.0,
    lose_lease: bool = False,
) -> tuple[ShardReader, Store, Pipeline]:
    raw = [
        make_record({"pk": {"S": f"k{n}"}}, sequence_number=str(100 + n)).raw
        for n in range(records)
    ]
    shard = Shard(SHARD, None, "100", "100000" if closed else None)
    source = MemorySource({SHARD: (shard, raw)})
    store = Store()
    store.create_missing([shard], set())
    lease = store.take(store.list_leases()[0], "w1")
    assert lease is not None
    clock = Clock()
    stop = threading.Event()
    batches = [0]

    def handled(batch: list[StreamRecord]) -> None:
        clock.now += clock_step
        handle(batch)
        batches[0] += 1
        if stop_after_batches is not None and batches[0] >= stop_after_batches:
            stop.set()
        if lose_lease and batches[0] == 3:
            store.lose = True

    pipeline = Pipeline(store, handled)
    reader = ShardReader(
        adapter=source, stream_arn=source.info.stream_arn, lease=lease,
        initial_position="TRIM_HORIZON", store=store, target=PipelineTarget(pipeline),  # type: ignore[arg-type]
        settings=ReaderSettings(get_records_limit=1000, max_records=100), stop=stop,
        monotonic=clock, clock=clock,
    )  # fmt: skip
    return reader, store, pipeline


def run(records: int, **kwargs: Any) -> tuple[ReaderOutcome, Store, Pipeline, ShardReader]:
    reader, store, pipeline = reader_for(records, **kwargs)
    return reader.run(), store, pipeline, reader


def to_the_tip(records: int, **kwargs: Any) -> tuple[Store, Pipeline, ShardReader]:
    """Run a reader of an open shard until it first waits for the next poll (it has caught
    up: the page was empty), then stop it."""
    reader, store, pipeline = reader_for(records, closed=False, **kwargs)
    steps = reader.steps()
    wait = next(steps)
    while wait <= 0:
        wait = steps.send(None)
    writes_at_tip = list(store.writes)
    reader.stop.set()
    for _ in steps:  # to its end: stopped
        pass
    assert store.writes == writes_at_tip  # the stop had nothing left to write
    return store, pipeline, reader


def test_a_page_of_ten_batches_is_checkpointed_once_after_its_last_batch() -> None:
    store, pipeline, _ = to_the_tip(1000)
    assert len(pipeline.batches) == 10
    # one write for the page's ten batches (before: ten), before the reader waits at the tip
    assert store.writes == [("1099", False)]
    # while the page's batches ran, the stored checkpoint never covered an unhandled record
    assert all(stored is None for _, stored in pipeline.batches)


def test_pages_read_back_to_back_share_a_write_until_the_reader_catches_up() -> None:
    store, pipeline, _ = to_the_tip(2500)
    assert len(pipeline.batches) == 25
    # two full pages and a partial one, then an empty one: one write (before: one a page)
    assert store.writes == [("2599", False)]
    for last, stored in pipeline.batches:  # nothing stored is past what was handled
        assert stored is None or int(stored) < int(last)


def test_a_reader_behind_writes_its_checkpoint_every_coalesce_interval() -> None:
    """Reading a backlog, a pending checkpoint waits at most COALESCE_S, across pages."""
    store, pipeline, _ = to_the_tip(4000, clock_step=COALESCE_S / 16)  # 16 batches a second
    # pending from the 1st batch (t = 1/16 s), due at the 17th (1799); pending again from the
    # 18th, due at the 34th (3499); the rest (to 4099) when the reader caught up
    assert store.writes == [("1799", False), ("3499", False), ("4099", False)]
    for last, stored in pipeline.batches:
        assert stored is None or int(stored) < int(last)


def test_a_shard_end_joins_the_pending_checkpoint() -> None:
    outcome, store, _, _ = run(2500)
    assert outcome is ReaderOutcome.FINISHED
    assert store.writes == [("2599", True)]  # the end, in the write the pages waited for


def test_a_stop_between_batches_writes_what_was_handled() -> None:
    outcome, store, pipeline, reader = run(1000, closed=False, stop_after_batches=4)
    assert outcome is ReaderOutcome.STOPPED
    assert [b for b, _ in pipeline.batches] == ["199", "299", "399", "499"]
    assert store.writes == [("499", False)]
    assert reader.last_handled == "499"


def test_a_failed_batch_keeps_the_batches_before_it_checkpointed() -> None:
    def handle(batch: list[StreamRecord]) -> None:
        if batch[0].sequence_number == "600":
            raise RuntimeError("consumer broke")

    outcome, store, _, reader = run(1000, handle=handle)
    assert outcome is ReaderOutcome.FAILED
    assert store.writes == [("599", False)]  # batches 100..599 handled; 600.. not
    assert reader.last_handled == "599"  # a restarted reader resumes after it


def test_a_slow_page_is_checkpointed_every_coalesce_interval() -> None:
    """A page whose batches take long (a slow webhook) is not checkpointed only at its end:
    a handled batch's checkpoint waits at most COALESCE_S."""
    step = COALESCE_S * 0.4
    outcome, store, _, _ = run(1000, clock_step=step)
    assert outcome is ReaderOutcome.FINISHED
    # 10 batches of 0.4 s: pending at 0.4 s, written with the batch ending at 1.6 s (499), the
    # next pending at 2.0 s, written at 3.2 s (899), the rest with the shard's end
    assert store.writes == [("499", False), ("899", False), ("1099", True)]


def test_a_lost_lease_drops_the_pending_checkpoint() -> None:
    outcome, store, _, reader = run(1000, lose_lease=True, clock_step=COALESCE_S)
    assert outcome is ReaderOutcome.LEASE_LOST
    # 1 s per batch: each write covers two batches; the lease is lost after the third
    assert store.writes == [("299", False)]
    assert reader.last_handled == "299"


@pytest.mark.parametrize("view", ["empty batch", "shard end"])
def test_a_plain_checkpoint_never_goes_back_behind_a_pending_one(view: str) -> None:
    """A later uncoalesced checkpoint at the stale last_handled joins the pending one."""
    reader, store, _ = reader_for(0, closed=False)
    reader.commit("150", coalesce=True)
    reader.commit("170", coalesce=True)
    assert store.writes == []  # both wait: no write was due
    assert reader.last_handled is None
    reader.commit(reader.last_handled, finished=view == "shard end")
    assert store.writes == [("170", view == "shard end")]
    assert reader.last_handled == "170"
