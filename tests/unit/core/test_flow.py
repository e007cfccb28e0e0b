"""Circuit breaker, token buckets and the fair scheduler, with a fake clock."""

from __future__ import annotations

import pytest

from processor.webhooks.flow import CircuitBreaker, CircuitOpen, FairScheduler, TokenBuckets


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_consecutive_failures_and_half_opens_after_cool_down() -> None:
    clock = Clock()
    changes: list[str] = []
    breaker = CircuitBreaker(
        "h:80", threshold=3, cool_down_s=10, clock=clock, on_change=lambda h, s: changes.append(s)
    )
    for _ in range(2):
        breaker.before_call()
        breaker.failure()
    breaker.before_call()
    breaker.success()  # a success resets the count
    for _ in range(3):
        breaker.before_call()
        breaker.failure()
    assert breaker.state == "open"
    with pytest.raises(CircuitOpen) as raised:
        breaker.before_call()
    assert raised.value.retry_in_s == pytest.approx(10)
    clock.now += 10
    assert str(breaker.state) == "half_open"
    breaker.before_call()  # the one probe
    with pytest.raises(CircuitOpen):
        breaker.before_call()  # nobody else while it is out
    breaker.failure()  # the probe failed: open again, for a whole cool-down
    assert breaker.state == "open"
    clock.now += 10
    breaker.before_call()
    breaker.success()
    assert str(breaker.state) == "closed"
    breaker.before_call()
    assert changes == ["open", "open", "closed"]


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    clock = Clock()
    buckets = TokenBuckets(2.0, 3, overrides={"vip": 100.0}, clock=clock)
    assert [buckets.try_take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.try_take("a") == pytest.approx(0.5)
    assert buckets.try_take("b") == 0.0  # tenants do not share a bucket
    clock.now += 0.5
    assert buckets.try_take("a") == 0.0
    assert buckets.try_take("a") > 0
    assert all(buckets.try_take("vip") == 0.0 for _ in range(3))
    assert TokenBuckets(None, 1).try_take("x") == 0.0


def test_scheduler_takes_tenants_in_turn_and_keys_in_order() -> None:
    scheduler: FairScheduler[str, str] = FairScheduler()
    for i in range(6):
        scheduler.add(f"noisy{i}", "noisy", f"n{i}")
    scheduler.add("q", "quiet", "q0")
    scheduler.add("q", "quiet", "q1")
    order = []
    while True:
        nxt = scheduler.next()
        if not isinstance(nxt, tuple):
            break
        key, item = nxt
        order.append(item)
        scheduler.done(key)
    # the quiet tenant's records are not queued behind the noisy tenant's six
    assert order[:4] == ["n0", "q0", "n1", "q1"]
    assert sorted(order) == sorted(["n0", "n1", "n2", "n3", "n4", "n5", "q0", "q1"])
    assert not scheduler.pending()


def test_scheduler_never_starts_two_items_of_one_key_and_drop_returns_the_rest() -> None:
    scheduler: FairScheduler[str, int] = FairScheduler()
    for i in range(3):
        scheduler.add("k", "t", i)
    assert scheduler.next() == ("k", 0)
    assert scheduler.next() is None  # k is busy
    assert scheduler.drop("k") == [0, 1, 2]
    assert not scheduler.pending()


def test_scheduler_reports_the_wait_when_every_tenant_is_out_of_tokens() -> None:
    clock = Clock()
    scheduler: FairScheduler[str, int] = FairScheduler(TokenBuckets(1.0, 1, clock=clock))
    scheduler.add("a", "t", 1)
    scheduler.add("b", "t", 2)
    assert scheduler.next() == ("a", 1)
    assert scheduler.next() == pytest.approx(1.0)
    clock.now += 1
    assert scheduler.next() == ("b", 2)


def test_aimd_rate_halves_on_throttling_and_climbs_back_by_steps() -> None:
    """With nothing known of what the table took, a throttling halves the rate."""
    from consumers.batch_write import AimdRate  # noqa: PLC0415 - a consumer's own helper

    clock = Clock()
    rate = AimdRate(minimum=10, maximum=150, increase=20, clock=clock)
    assert rate.acquire(50) == 0.0  # unlimited until throttled
    assert rate.acquire(150) == 0.0
    clock.now += 1.0
    assert rate.throttled() == 100  # half of the 200 items sent in the last second
    assert rate.acquire(50) == 0.0
    assert rate.acquire(50) == pytest.approx(0.5)  # 50 items at 100/s are 0.5 s of budget
    assert rate.throttled() == 50
    assert rate.throttled() == 25
    assert rate.throttled() == 12.5
    assert rate.throttled() == 10  # the floor
    assert rate.lowest == 10
    for _ in range(7):
        rate.succeeded()
    assert rate.rate == 150
    rate.succeeded()
    assert rate.rate is None  # above the maximum: unlimited again


def test_aimd_rate_is_cut_to_just_under_what_the_table_took() -> None:
    """A table without burst credit takes exactly its capacity: the rate is cut to 0.9 of
    what it took over the last second, not halved (issue 32's sawtooth)."""
    from consumers.batch_write import AimdRate  # noqa: PLC0415 - a consumer's own helper

    clock = Clock()
    rate = AimdRate(minimum=10, maximum=10_000, increase=100, clock=clock)
    rate.throttled()  # the first call found the table empty: half of nothing sent, the floor
    rate.rate = 500.0
    rate.acquire(0)
    clock.now += 2.0
    for _ in range(10):  # within the last second: 500 items sent, 400 taken
        rate.acquire(50)
        rate.accepted(40)
        clock.now += 0.09
    assert rate.throttled() == pytest.approx(360)  # 0.9 x 400, where halving gave 250
    for _ in range(10):
        clock.now += 0.1
        rate.accepted(5)  # the table took little: never below half the rate
    clock.now += 0.01
    assert rate.throttled() == pytest.approx(180)


def test_aimd_rate_measures_a_first_throttling_over_the_time_it_sent() -> None:
    """A table without credit throttles the first calls: 100 items in the first 30 ms are
    not a rate of 100/s (the rate is taken over at least 0.1 s, at most 1 s)."""
    from consumers.batch_write import AimdRate  # noqa: PLC0415 - a consumer's own helper

    clock = Clock()
    rate = AimdRate(minimum=10, maximum=10_000, increase=100, clock=clock)
    for _ in range(4):
        rate.acquire(25)
    clock.now += 0.03
    rate.accepted(43)
    assert rate.throttled() == pytest.approx(500)  # half of 1,000/s; 0.9 x 430 is less


def test_aimd_rate_is_cut_once_per_congestion_event() -> None:
    """Calls sent before the last cut come back throttled too: they were sent at the old
    rate, so they do not cut it again. A call sent after the cut does (issue 19)."""
    from consumers.batch_write import AimdRate  # noqa: PLC0415 - a consumer's own helper

    clock = Clock()
    rate = AimdRate(minimum=10, maximum=10_000, increase=20, clock=clock)
    for _ in range(4):
        rate.acquire(100)  # four calls in flight
    sent = [rate.now()] * 4
    clock.now += 1.0
    assert rate.throttled(sent_at=sent[0]) == 200  # half of the 400 sent
    for sent_at in sent[1:]:  # the other three of the same event
        assert rate.throttled(sent_at=sent_at) == 200
    clock.now += 0.1
    later = rate.now()
    clock.now += 0.1
    assert rate.throttled(sent_at=later) == 100  # a new event
    assert rate.throttled() == 50  # without a send time, every call still counts
