"""The batch writer's shared queue (consumers/batch_write/queue.py): pure, with threads."""

from __future__ import annotations

import threading

from consumers.batch_write.limits import MAX_BYTES_PER_CALL, MAX_REQUESTS_PER_CALL
from consumers.batch_write.queue import WriteQueue


def queue(
    sizes: list[int], *, max_attempts: int = 3, stop: threading.Event | None = None
) -> WriteQueue[int]:
    return WriteQueue(
        ((i, size) for i, size in enumerate(sizes)),
        max_requests=MAX_REQUESTS_PER_CALL,
        max_bytes=MAX_BYTES_PER_CALL,
        max_attempts=max_attempts,
        stopped=(stop or threading.Event()).is_set,
    )


def test_calls_carry_at_most_25_requests_and_16_mb() -> None:
    small = queue([100] * 60)
    calls = []
    while (call := small.take()) is not None:
        calls.append(len(call))
        small.settle(call)
    assert calls == [25, 25, 10]
    large = queue([6 * 1024 * 1024] * 5)
    calls = []
    while (call := large.take()) is not None:
        calls.append(len(call))
        large.settle(call)
    assert calls == [2, 2, 1]


def test_leftovers_ride_at_the_back_behind_writes_not_sent_yet() -> None:
    """A hot partition's leftovers must not make every following call partial: the writes
    not sent yet go first, and leftovers fill the calls after them."""
    q = queue([1] * 40)
    first = q.take()
    assert first is not None
    assert [w.write for w in first] == list(range(25))
    assert q.settle(first, [first[3], first[7]]) == 2  # two came back unprocessed
    second = q.take()
    assert second is not None
    assert [w.write for w in second] == [*range(25, 40), 3, 7]
    assert [w.attempts for w in second[-3:]] == [1, 2, 2]
    q.settle(second)
    assert q.take() is None
    assert q.left == 0


def test_a_write_refused_whole_max_attempts_times_is_exhausted_not_resent() -> None:
    q = queue([1, 1], max_attempts=2)
    call = q.take()
    assert call is not None
    q.settle(call, [w for w in call if w.write == 0])  # write 1 was written: not a refusal
    for _ in range(2):
        call = q.take()
        assert call is not None
        q.settle(call, call)  # refused whole
    assert q.take() is None
    assert [w.write for w in q.exhausted] == [0]
    assert [w.refusals for w in q.exhausted] == [2]
    assert q.left == 1


def test_leftovers_of_calls_that_wrote_something_go_back_whatever_their_count() -> None:
    """A hot partition's last writes ride many partial calls while it drains; each such call
    writes something, so the batch ends, and they are not given up on the way (ADR 0032)."""
    q = queue([1] * 10, max_attempts=2)
    rides = 0
    while (call := q.take()) is not None:
        rides += 1
        q.settle(call, call[:-1])  # the table took one write of each call
    assert rides == 10
    assert q.exhausted == []
    assert q.left == 0


def test_a_slot_waits_for_leftovers_while_another_call_is_in_flight() -> None:
    """An empty queue is not the end while a call may still bring writes back."""
    q = queue([1] * 25)
    in_flight = q.take()
    assert in_flight is not None
    taken: list[list[int] | None] = []

    def other_slot() -> None:
        call = q.take()
        taken.append(None if call is None else [w.write for w in call])
        if call is not None:
            q.settle(call)

    slot = threading.Thread(target=other_slot)
    slot.start()
    slot.join(0.2)
    assert slot.is_alive()  # waiting: the call in flight may leave something
    q.settle(in_flight, in_flight[:2])
    slot.join(5)
    assert taken == [[0, 1]]
    assert q.take() is None


def test_once_stopped_every_write_is_still_sent_once_but_nothing_is_resent() -> None:
    """Shutdown: the batch's writes all go out (as the chunks always did), leftovers stay."""
    stop = threading.Event()
    q = queue([1] * 60, stop=stop)
    call = q.take()
    assert call is not None
    stop.set()
    q.settle(call, call[:5])
    sent = 25
    while (call := q.take()) is not None:
        sent += len(call)
        q.settle(call)
    assert sent == 60
    assert [w.write for w in q.exhausted] == [0, 1, 2, 3, 4]
    assert q.left == 5


def test_a_failed_call_ends_taking() -> None:
    q = queue([1] * 60)
    call = q.take()
    assert call is not None
    error = RuntimeError("validation")
    q.fail(call, error)
    assert q.take() is None
    assert q.error is error
    assert len(q.failed) == 25
    assert q.left == 60


def test_leftovers_wait_for_the_calls_in_flight_and_go_together() -> None:
    """A batch's tail: leftovers alone do not go in a call of their own while other calls are
    in flight; those calls' leftovers join them, and one call carries them all."""
    q = queue([1] * 100)
    calls = [q.take() for _ in range(4)]
    assert all(c is not None and len(c) == 25 for c in calls)
    first, second, third, fourth = (c for c in calls if c is not None)
    q.settle(first, first[:2])  # two came back; three calls are still in flight
    taken: list[list[int]] = []
    taker = threading.Thread(target=lambda: taken.append([w.write for w in q.take() or []]))
    taker.start()
    taker.join(0.2)
    assert taker.is_alive(), "two leftovers went alone while three calls were in flight"
    q.settle(second, second[:1])
    q.settle(third)
    assert taker.is_alive()
    q.settle(fourth, fourth[-1:])
    taker.join(5)
    assert not taker.is_alive()
    assert taken == [[0, 1, 25, 99]]  # one call, in the order they came back


def test_writes_not_sent_yet_do_not_wait_for_calls_in_flight() -> None:
    """Only leftovers wait: a batch's last, short call of writes never sent goes at once."""
    q = queue([1] * 30)
    first = q.take()
    assert first is not None
    assert len(first) == 25
    second = q.take()  # returns at once, though the first call is in flight
    assert second is not None
    assert [w.write for w in second] == list(range(25, 30))


def test_a_full_call_of_leftovers_goes_without_waiting() -> None:
    q = queue([1] * 75)
    calls = [q.take() for _ in range(3)]
    first, second, _third = (c for c in calls if c is not None)
    q.settle(first, first)  # all 25 came back: a full call's worth
    q.settle(second, second[:5])
    again = q.take()  # the third call is still in flight
    assert again is not None
    assert len(again) == 25
