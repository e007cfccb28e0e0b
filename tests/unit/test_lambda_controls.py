"""Lambda-parity controls: record age, retries until expiry, parallelism by key, window."""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from processor.core.batches import key_groups
from processor.core.consumer import BatchResult, RouteStats
from processor.core.dead_letters import DeadLetter
from processor.core.dispatch import Dispatcher
from processor.core.records import StreamRecord
from processor.core.retry import RetryPolicy
from processor.core.routing import Route
from processor.errors import TransientError
from processor.testing import make_record

NOW = 1_700_000_000.0


class ListSink:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: list[DeadLetter] = []

    def send(self, entries: Sequence[DeadLetter]) -> None:
        with self.lock:
            self.entries.extend(entries)


def make(
    policy: RetryPolicy, consumer: object, clock: list[float] | None = None
) -> tuple[Dispatcher, ListSink, RouteStats]:
    sink, stats = ListSink(), RouteStats()
    now = clock if clock is not None else [NOW]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    d = Dispatcher(
        [Route("r", consumer)],  # type: ignore[arg-type]
        sink,
        policy,
        stats={"r": stats},
        stop=threading.Event(),
        sleep=sleep,
        clock=lambda: now[0],
    )
    return d, sink, stats


def test_records_older_than_max_record_age_are_dead_lettered_without_a_call() -> None:
    """A record past max_record_age_s is dead-lettered without a call; the rest are delivered."""
    calls: list[list[str]] = []
    old = make_record({"pk": {"S": "a"}}, created=NOW - 120, event_id="old")
    new = make_record({"pk": {"S": "b"}}, created=NOW - 10, event_id="new")
    d, sink, stats = make(
        RetryPolicy(max_record_age_s=60), lambda rs: calls.append([r.event_id for r in rs])
    )
    d.dispatch([old, new])
    assert calls == [["new"]]
    assert [e.record["eventID"] for e in sink.entries] == ["old"]
    assert sink.entries[0].error_type == "RecordTooOld"
    assert stats["too_old"] == 1


def test_max_retries_minus_one_retries_until_the_record_is_too_old() -> None:
    """With max_retries=-1 a failing record is retried until it passes max_record_age_s."""
    clock = [NOW]
    calls = [0]

    def failing(records: Sequence[StreamRecord]) -> None:
        calls[0] += 1
        raise TransientError("down")

    record = make_record({"pk": {"S": "a"}}, created=NOW, event_id="x")
    d, sink, _ = make(
        RetryPolicy(max_retries=-1, max_record_age_s=600, max_delay_s=30), failing, clock
    )
    d.dispatch([record])
    assert calls[0] > 20  # many more than any default retry budget
    assert clock[0] - NOW > 600
    assert [e.record["eventID"] for e in sink.entries] == ["x"]


def test_key_groups_keep_each_key_whole_and_in_order() -> None:
    """Every key's records land in one group, in stream order; groups are balanced by key."""
    recs = [make_record({"pk": {"S": f"k{i % 5}"}}, event_id=f"e{i}") for i in range(20)]
    groups = key_groups(recs, 3)
    assert len(groups) == 3
    for group in groups:
        seqs = [r.sequence_int for r in group]
        assert seqs == sorted(seqs)
    owners = {r.key_id: i for i, g in enumerate(groups) for r in g}
    assert len(owners) == 5
    assert sum(len(g) for g in groups) == 20


class Injector:
    """A consumer that fails at random, records order and checks per-key exclusivity."""

    def __init__(self, seed: int, fail_rate: float, delay_s: float = 0.0) -> None:
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.fail_rate = fail_rate
        self.delay_s = delay_s
        self.in_flight: dict[str, int] = defaultdict(int)
        self.overlaps = 0
        self.delivered: dict[str, list[int]] = defaultdict(list)

    def __call__(self, records: Sequence[StreamRecord]) -> BatchResult | None:
        with self.lock:
            keys = {r.key_id for r in records}
            for k in keys:
                self.in_flight[k] += 1
                self.overlaps += self.in_flight[k] > 1
            roll = self.rng.random()
            failed = [r for r in records if self.rng.random() < self.fail_rate]
        try:
            if self.delay_s:
                time.sleep(self.delay_s)
            if roll < self.fail_rate / 2:
                raise TransientError("whole call failed")
            blocked: set[str] = set()
            with self.lock:
                for r in records:
                    if r in failed or r.key_id in blocked:
                        blocked.add(r.key_id)
                    else:
                        self.delivered[r.key_id].append(r.sequence_int)
            return BatchResult.failed(failed) if failed else None
        finally:
            with self.lock:
                for k in keys:
                    self.in_flight[k] -= 1


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), fail_rate=st.sampled_from([0.0, 0.05, 0.2, 0.5]))
def test_parallelism_keeps_per_key_order_under_random_failures(seed: int, fail_rate: float) -> None:
    """parallelism=8 over 50 keys: per-key order holds, no key runs twice at once, all handled."""
    rng = random.Random(seed)
    recs = [make_record({"pk": {"S": f"k{rng.randrange(50)}"}}, created=NOW) for _ in range(300)]
    consumer = Injector(seed, fail_rate)
    d, sink, _ = make(RetryPolicy(max_retries=2, parallelism=8), consumer)
    unhandled = d.dispatch(recs)
    d.close()
    assert unhandled == []
    assert consumer.overlaps == 0
    dead = {e.record["dynamodb"]["SequenceNumber"] for e in sink.entries}
    for key, delivered in consumer.delivered.items():
        assert delivered == sorted(delivered), f"key {key} delivered out of order"
    handled = {str(s) for seqs in consumer.delivered.values() for s in seqs} | dead
    assert handled == {r.sequence_number for r in recs}  # nothing left unhandled


def test_report_mode_returns_exhausted_records_instead_of_dead_lettering() -> None:
    """Lambda mode: exhausted records come back to the caller; rejected ones are dead-lettered."""
    a1, b1, a2 = (
        make_record({"pk": {"S": k}}, created=NOW, event_id=e)
        for k, e in [("a", "a1"), ("b", "b1"), ("a", "a2")]
    )

    def fail_a1(records: Sequence[StreamRecord]) -> BatchResult | None:
        return BatchResult.failed(
            [r for r in records if r.event_id == "a1"], rejected={"b1": "400"}
        )

    d, sink, _ = make(
        RetryPolicy(max_retries=0, bisect_on_error=False, report_exhausted=True), fail_a1
    )
    unhandled = d.dispatch([a1, b1, a2])
    assert [r.event_id for r in unhandled] == ["a1", "a2"]
    assert [e.record["eventID"] for e in sink.entries] == ["b1"]
