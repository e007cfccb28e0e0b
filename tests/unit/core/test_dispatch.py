"""Delivery semantics: retries, partial failure, bisection, dead-lettering, shutdown."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import pytest

from processor.core.consumer import BatchResult, RouteStats
from processor.core.dead_letters import DeadLetter
from processor.core.dispatch import Dispatcher
from processor.core.records import StreamRecord
from processor.core.retry import RetryPolicy
from processor.core.routing import Route, compile_filters
from processor.core.waits import parse_retry_after
from processor.errors import RecordError, ShutdownRequested, TransientError
from processor.testing import make_record


class ListSink:
    def __init__(self, fail_times: int = 0) -> None:
        self.entries: list[DeadLetter] = []
        self.fail_times = fail_times

    def send(self, entries: Sequence[DeadLetter]) -> None:
        if self.fail_times:
            self.fail_times -= 1
            raise TransientError("dead-letter destination unavailable")
        self.entries.extend(entries)


class Recorder:
    """A consumer that records every call and fails as told."""

    def __init__(
        self, behaviour: Callable[[list[StreamRecord], int], BatchResult | None] | None = None
    ) -> None:
        self.calls: list[list[str]] = []
        self.delivered: list[str] = []
        self._behaviour = behaviour

    def __call__(self, records: Sequence[StreamRecord]) -> BatchResult | None:
        batch = list(records)
        self.calls.append([r.event_id for r in batch])
        result = self._behaviour(batch, len(self.calls)) if self._behaviour else None
        failed = result.failed_event_ids if result else frozenset()
        rejected = result.rejected if result else {}
        blocked: set[str] = set()
        for r in batch:  # per key: everything from the key's first failure on is not delivered
            if r.key_id in blocked or r.event_id in failed:
                blocked.add(r.key_id)
            elif r.event_id not in rejected:
                self.delivered.append(r.event_id)
        return result


def records(n: int) -> list[StreamRecord]:
    return [make_record({"pk": {"S": f"k{i}"}}, event_id=f"e{i}") for i in range(n)]


def records_at(created: float, n: int) -> list[StreamRecord]:
    return [
        make_record({"pk": {"S": f"k{i}"}}, event_id=f"e{i}", created=created) for i in range(n)
    ]


def dispatcher(
    *routes: Route,
    sink: ListSink | None = None,
    policy: RetryPolicy | None = None,
    stop: threading.Event | None = None,
    sleeps: list[float] | None = None,
) -> tuple[Dispatcher, ListSink, dict[str, RouteStats]]:
    sink = sink or ListSink()
    stats = {r.name: RouteStats() for r in routes}
    recorded = sleeps if sleeps is not None else []
    d = Dispatcher(
        list(routes),
        sink,
        policy or RetryPolicy(max_retries=2),
        stats=stats,
        stop=stop or threading.Event(),
        sleep=recorded.append,
        clock=lambda: 1_700_000_000.0,
    )
    return d, sink, stats


def test_successful_batch_is_delivered_once_in_order() -> None:
    """A consumer that succeeds gets the batch once, in stream order."""
    consumer = Recorder()
    d, sink, stats = dispatcher(Route("r", consumer))
    d.dispatch(records(5))
    assert consumer.calls == [["e0", "e1", "e2", "e3", "e4"]]
    assert stats["r"]["delivered"] == 5
    assert sink.entries == []


def test_transient_failure_is_retried_with_backoff_then_succeeds() -> None:
    """A raising consumer is retried after a recorded (not real) backoff sleep."""

    def flaky(batch: list[StreamRecord], call: int) -> BatchResult | None:
        if call < 3:
            raise TransientError("503")
        return None

    consumer = Recorder(flaky)
    sleeps: list[float] = []
    d, sink, stats = dispatcher(Route("r", consumer), sleeps=sleeps)
    d.dispatch(records(3))
    assert len(consumer.calls) == 3
    assert len(sleeps) == 2
    assert all(0 <= s <= 20 for s in sleeps)
    assert stats["r"]["retries"] == 2
    assert sink.entries == []


def test_retry_after_is_honoured() -> None:
    """A TransientError carrying retry_after waits at least that long."""

    def throttled(batch: list[StreamRecord], call: int) -> BatchResult | None:
        if call == 1:
            raise TransientError("429", retry_after=7.0)
        return None

    sleeps: list[float] = []
    d, _, _ = dispatcher(Route("r", Recorder(throttled)), sleeps=sleeps)
    d.dispatch(records(1))
    assert sleeps
    assert sleeps[0] >= 7.0


def test_partial_failure_resumes_from_the_first_failed_record_of_each_key() -> None:
    """Per key, the retry starts at the key's first failure; other keys' successes are done."""
    batch = [
        make_record({"pk": {"S": k}}, event_id=e)
        for k, e in [("a", "a1"), ("b", "b1"), ("a", "a2"), ("c", "c1"), ("b", "b2"), ("a", "a3")]
    ]

    def fail_a2_b1_once(got: list[StreamRecord], call: int) -> BatchResult | None:
        if call == 1:
            return BatchResult.failed([r for r in got if r.event_id in ("a2", "b1")])
        return None

    consumer = Recorder(fail_a2_b1_once)
    d, _, stats = dispatcher(Route("r", consumer))
    d.dispatch(batch)
    assert consumer.calls == [["a1", "b1", "a2", "c1", "b2", "a3"], ["b1", "a2", "b2", "a3"]]
    assert sorted(consumer.delivered) == ["a1", "a2", "a3", "b1", "b2", "c1"]
    assert stats["r"]["delivered"] == 6


def test_poison_record_is_bisected_and_dead_lettered_others_delivered_once() -> None:
    """One bad record in 100: it alone is dead-lettered with its record; the 99 arrive once."""

    def poison(batch: list[StreamRecord], call: int) -> BatchResult | None:
        if any(r.event_id == "e37" for r in batch):
            raise ValueError("cannot handle e37")
        return None

    consumer = Recorder(poison)
    batch = records(100)
    d, sink, stats = dispatcher(Route("r", consumer), policy=RetryPolicy(max_retries=1))
    d.dispatch(batch)
    assert sorted(consumer.delivered) == sorted(f"e{i}" for i in range(100) if i != 37)
    assert len(consumer.delivered) == 99
    assert [e.record["eventID"] for e in sink.entries] == ["e37"]
    entry = sink.entries[0]
    assert entry.record == batch[37].raw
    assert entry.error_type == "ValueError"
    assert "e37" in entry.error_message
    assert entry.attempts == 2
    assert entry.route == "r"
    assert stats["r"]["dead_lettered"] == 1
    assert stats["r"]["delivered"] == 99


def test_without_bisection_the_whole_failing_batch_is_dead_lettered() -> None:
    """bisect_on_error=false dead-letters every record of the failing batch (Lambda's way)."""

    def always(batch: list[StreamRecord], call: int) -> BatchResult | None:
        raise ValueError("down")

    d, sink, _ = dispatcher(
        Route("r", Recorder(always)), policy=RetryPolicy(max_retries=0, bisect_on_error=False)
    )
    d.dispatch(records(4))
    assert [e.record["eventID"] for e in sink.entries] == ["e0", "e1", "e2", "e3"]


def test_record_error_is_never_retried() -> None:
    """A RecordError from a single record dead-letters it on the first attempt."""

    def bad(batch: list[StreamRecord], call: int) -> BatchResult | None:
        raise RecordError("item too large")

    consumer = Recorder(bad)
    d, sink, _ = dispatcher(Route("r", consumer), policy=RetryPolicy(max_retries=5))
    d.dispatch(records(1))
    assert len(consumer.calls) == 1
    assert sink.entries[0].error_type == "RecordError"
    assert sink.entries[0].attempts == 1


def test_rejected_records_are_dead_lettered_without_retry_and_the_rest_delivered() -> None:
    """Records a consumer rejects go to the dead-letter destination at once; others go on."""

    def reject_e1(batch: list[StreamRecord], call: int) -> BatchResult | None:
        return BatchResult(rejected={"e1": "HTTP 400"})

    consumer = Recorder(reject_e1)
    d, sink, stats = dispatcher(Route("r", consumer))
    d.dispatch(records(3))
    assert len(consumer.calls) == 1
    assert [e.record["eventID"] for e in sink.entries] == ["e1"]
    assert sink.entries[0].error_type == "Rejected"
    assert sink.entries[0].error_message == "HTTP 400"
    assert stats["r"]["delivered"] == 2
    assert stats["r"]["dead_lettered"] == 1


def test_filters_decide_which_records_a_route_sees() -> None:
    """A route with a filter gets only matching records; the rest count as filtered."""
    consumer = Recorder()
    route = Route("inserts", consumer, compile_filters(['{"eventName": ["REMOVE"]}']))
    batch = [*records(3), make_record({"pk": {"S": "x"}}, event_name="REMOVE", event_id="rm")]
    d, _, stats = dispatcher(route)
    d.dispatch(batch)
    assert consumer.calls == [["rm"]]
    assert stats["inserts"]["filtered"] == 3


def test_every_route_gets_the_batch() -> None:
    """Routes are independent: a failure in one does not stop delivery to another."""

    def broken(batch: list[StreamRecord], call: int) -> BatchResult | None:
        raise ValueError("broken")

    good, bad = Recorder(), Recorder(broken)
    d, sink, _ = dispatcher(
        Route("bad", bad),
        Route("good", good),
        policy=RetryPolicy(max_retries=0, bisect_on_error=False),
    )
    d.dispatch(records(2))
    assert good.delivered == ["e0", "e1"]
    assert {e.route for e in sink.entries} == {"bad"}


def test_stop_during_retries_abandons_the_batch_without_dead_lettering() -> None:
    """A stop while waiting to retry raises ShutdownRequested; nothing is dead-lettered."""
    stop = threading.Event()

    def fail_and_stop(batch: list[StreamRecord], call: int) -> BatchResult | None:
        stop.set()
        raise TransientError("503")

    d, sink, _ = dispatcher(
        Route("r", Recorder(fail_and_stop)), stop=stop, policy=RetryPolicy(max_retries=5)
    )
    with pytest.raises(ShutdownRequested):
        d.dispatch(records(3))
    assert sink.entries == []


def test_dead_letter_destination_outage_is_retried_until_it_accepts() -> None:
    """If the dead-letter destination fails transiently, the entries are retried, not lost."""

    def bad(batch: list[StreamRecord], call: int) -> BatchResult | None:
        raise RecordError("bad")

    sink = ListSink(fail_times=3)
    sleeps: list[float] = []
    d, _, _ = dispatcher(Route("r", Recorder(bad)), sink=sink, sleeps=sleeps)
    d.dispatch(records(1))
    assert len(sink.entries) == 1
    assert len(sleeps) == 3


def test_malformed_records_are_dead_lettered_with_their_reason() -> None:
    """Records that cannot be parsed go to the dead-letter destination as received."""
    d, sink, _ = dispatcher(Route("r", Recorder()))
    d.reject_malformed([({"eventName": "INSERT"}, RecordError("no 'dynamodb' object"))], "shard-1")
    assert sink.entries[0].record == {"eventName": "INSERT"}
    assert sink.entries[0].route == "-"
    assert sink.entries[0].shard_id == "shard-1"
    assert "dynamodb" in sink.entries[0].error_message


def test_consumer_returning_a_wrong_type_is_a_failure() -> None:
    """A consumer must return None or BatchResult; anything else counts as a failure."""
    d, sink, _ = dispatcher(
        Route("r", lambda records: "ok"), policy=RetryPolicy(max_retries=0, bisect_on_error=False)
    )
    d.dispatch(records(1))
    assert sink.entries[0].error_type == "TypeError"


def test_a_dead_letter_carries_the_consumers_last_reason_for_that_record() -> None:
    """BatchResult.reasons: when retries run out, each record's letter says why it failed
    on the last attempt; a record without a reason gets the batch's summary."""

    def failing(batch: list[StreamRecord], call: int) -> BatchResult:
        return BatchResult.failed(batch, reasons={"e0": f"HTTP 503 on attempt {call}"})

    route = Route("r", Recorder(failing))
    d, sink, _ = dispatcher(route, policy=RetryPolicy(max_retries=2, bisect_on_error=False))
    d.dispatch(records(2))
    messages = {entry.record["eventID"]: entry.error_message for entry in sink.entries}
    assert messages["e0"] == "HTTP 503 on attempt 3"
    assert messages["e1"] == "consumer reported 2 of 2 records failed"


# -- holds: a destination known to be down (issue 15, item 3) ----------------------------------


class Holder:
    """A consumer whose destination is down for ``holds`` calls: it holds every record (the
    webhook's on_unavailable = "wait"), then delivers."""

    def __init__(self, holds: int, retry_after: float = 30.0, *, really_fail: int = 0) -> None:
        self.holds = holds
        self.really_fail = really_fail
        self.retry_after = retry_after
        self.calls = 0

    def __call__(self, batch: Sequence[StreamRecord]) -> BatchResult | None:
        self.calls += 1
        ids = frozenset(r.event_id for r in batch)
        if self.really_fail:
            self.really_fail -= 1
            return BatchResult(ids)
        if self.holds:
            self.holds -= 1
            return BatchResult(ids, retry_after=self.retry_after, held=ids)
        return None


def test_holds_do_not_spend_retries_and_wait_the_whole_cool_down() -> None:
    holder = Holder(holds=10, retry_after=30.0)
    sleeps: list[float] = []
    d, sink, stats = dispatcher(
        Route("r", holder),
        policy=RetryPolicy(max_retries=1, max_delay_s=20.0),
        sleeps=sleeps,
    )
    d.dispatch(records_at(1_700_000_000.0, 3))
    assert sink.entries == []
    assert holder.calls == 11
    assert sleeps == [30.0] * 10  # not capped at max_delay_s = 20
    assert stats["r"].snapshot()["held"] == 10
    assert stats["r"].snapshot()["delivered"] == 3


def test_real_failures_still_spend_retries_between_holds() -> None:
    holder = Holder(holds=5, really_fail=2)
    d, sink, _ = dispatcher(
        Route("r", holder), policy=RetryPolicy(max_retries=1, bisect_on_error=False)
    )
    d.dispatch(records_at(1_700_000_000.0, 2))
    assert len(sink.entries) == 2  # two real failures exhaust max_retries = 1
    assert holder.calls == 2


def on_a_driven_clock(
    holder: Holder, policy: RetryPolicy
) -> tuple[Dispatcher, ListSink, list[float]]:
    """A dispatcher whose sleeps move its clock (no real waiting)."""
    now = [1_700_000_000.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    sink = ListSink()
    d = Dispatcher(
        [Route("r", holder)],
        sink,
        policy,
        stats={"r": RouteStats()},
        stop=threading.Event(),
        sleep=sleep,
        clock=lambda: now[0],
    )
    return d, sink, now


def test_a_hold_ends_at_max_record_age() -> None:
    holder = Holder(holds=1000, retry_after=30.0)
    d, sink, now = on_a_driven_clock(holder, RetryPolicy(max_retries=3, max_record_age_s=120))
    d.dispatch(records_at(now[0], 2))
    assert len(sink.entries) == 2
    assert "held" in sink.entries[0].error_message
    assert 120 < now[0] - 1_700_000_000.0 <= 150 + 30


def test_without_an_age_limit_a_hold_ends_at_the_streams_retention() -> None:
    holder = Holder(holds=10_000, retry_after=3600.0)
    d, sink, now = on_a_driven_clock(holder, RetryPolicy())
    d.dispatch(records_at(now[0] - 3600, 1))  # an hour old when read
    assert len(sink.entries) == 1
    assert holder.calls == 25  # read at 1 h old, held hourly until older than 24 h


# -- counting: every record counted once per route (issue 15, item 9a) --------------------------


class RejectOneFailOne:
    """Rejects e0 at once, fails e1 every time, handles the rest."""

    def __call__(self, batch: Sequence[StreamRecord]) -> BatchResult | None:
        ids = {r.event_id for r in batch}
        failed = frozenset(ids & {"e1"})
        rejected = {"e0": "HTTP 400"} if "e0" in ids else {}
        if not failed and not rejected:
            return None
        return BatchResult(failed, rejected)


@pytest.mark.parametrize("bisect", [False, True])
def test_a_record_rejected_beside_an_exhausted_one_is_counted_once(bisect: bool) -> None:
    d, sink, stats = dispatcher(
        Route("r", RejectOneFailOne()),
        policy=RetryPolicy(max_retries=1, bisect_on_error=bisect),
    )
    d.dispatch(records(4))
    snap = stats["r"].snapshot()
    assert sorted(e.record["eventID"] for e in sink.entries) == ["e0", "e1"]
    assert snap["dead_lettered"] == 2
    assert snap["delivered"] == 2  # e2 and e3: e0 was dead-lettered, not delivered
    assert snap["delivered"] + snap["dead_lettered"] == 4


def test_delivered_by_one_route_and_dead_lettered_by_another_counts_once_in_each() -> None:
    d, _, stats = dispatcher(
        Route("ok", Recorder()),
        Route("bad", RejectOneFailOne()),
        policy=RetryPolicy(max_retries=0, bisect_on_error=False),
    )
    d.dispatch(records(2))
    ok, bad = stats["ok"].snapshot(), stats["bad"].snapshot()
    assert (ok["delivered"], ok.get("dead_lettered", 0)) == (2, 0)
    assert bad.get("delivered", 0) + bad["dead_lettered"] == 2
    tenants = d.tenant_stats.snapshot()
    assert sum(v for (route, _, outcome), v in tenants.items() if outcome == "dead_lettered") == 2


def test_retry_after_is_read_from_seconds_or_an_http_date() -> None:
    """RFC 9110's two forms of Retry-After (delay-seconds and an HTTP-date, the example from
    the RFC), and nonsense as no hint at all."""
    assert parse_retry_after("120") == 120.0
    now = 784_111_757.0  # Sun, 06 Nov 1994 08:49:17 GMT minus 20 s
    assert parse_retry_after("Fri, 31 Dec 1999 23:59:59 GMT", clock=lambda: 946_684_799.0) == 0.0
    assert parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", clock=lambda: now) == 20.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
