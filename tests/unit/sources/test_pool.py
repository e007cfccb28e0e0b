"""The reader pool: many step generators on a bounded number of threads."""

from __future__ import annotations

import contextvars
import itertools
import threading
import time
from collections.abc import Generator

import pytest
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_fixed

from processor.runtime.pool import StepPool, WakingEvent
from processor.runtime.steps import drive, just, retry_steps

Steps = Generator[float, None, object]


def _wait_until(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.005)


def _pool_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("test-pool")]


def test_many_waiting_tasks_run_on_at_most_size_threads() -> None:
    pool = StepPool(4, name="test-pool")
    rounds = dict.fromkeys(range(300), 0)
    most_threads = 0

    def task(n: int) -> Steps:
        for _ in range(5):
            rounds[n] += 1
            yield 0.01
        return n

    try:
        tasks = [pool.submit(task(n), name=f"t{n}") for n in range(300)]
        while any(t.is_alive() for t in tasks):
            most_threads = max(most_threads, len(_pool_threads()))
            time.sleep(0.002)
        assert [t.result for t in tasks] == list(range(300))
        assert set(rounds.values()) == {5}
        assert pool.most_busy <= 4
        assert most_threads <= 4 + 1  # the workers and the scheduler
    finally:
        pool.close()


def test_a_busy_task_does_not_starve_a_waiting_one() -> None:
    """One thread; a task that never waits (catching up) and one polling every 10 ms: the
    polling task still runs on time, because a busy task goes behind whatever is due."""
    pool = StepPool(1, name="test-pool")
    stop = threading.Event()
    polls: list[float] = []
    busy_steps = 0

    def busy() -> Steps:
        nonlocal busy_steps
        while not stop.is_set():
            busy_steps += 1
            time.sleep(0.001)  # a page's work
            yield 0.0
        return None

    def poller() -> Steps:
        for _ in range(20):
            polls.append(busy_steps)  # how far the busy task got by each poll
            yield 0.01
        return None

    try:
        pool.submit(busy(), name="busy")
        polling = pool.submit(poller(), name="poller")
        polling.join(10)
        stop.set()
        assert not polling.is_alive()
        # not starved: between two polls the busy task ran a bounded number of its steps (a
        # starved poller would see the busy task run on and on); counted, not timed, so a
        # loaded machine (fewer steps per 10 ms) cannot break it
        steps_between = [b - a for a, b in itertools.pairwise(polls)]
        assert max(steps_between) < 200, steps_between
        assert busy_steps > 20
    finally:
        pool.close()


def test_setting_a_tasks_stop_runs_it_at_once() -> None:
    pool = StepPool(2, name="test-pool")
    stop = WakingEvent()
    woke = threading.Event()

    def reader() -> Steps:
        while not stop.is_set():
            yield 3600.0  # an idle shard's long wait
        woke.set()
        return "stopped"

    try:
        task = pool.submit(reader(), name="r", stop=stop)
        _wait_until(lambda: pool.steps_run >= 1)
        stop.set()
        task.join(5)  # its wait was an hour: joined at all, it was woken
        assert woke.is_set()
        assert task.result == "stopped"
    finally:
        pool.close()


def test_a_stop_set_while_the_step_runs_is_not_missed() -> None:
    pool = StepPool(1, name="test-pool")
    stop = WakingEvent()
    in_step = threading.Event()
    go_on = threading.Event()

    def reader() -> Steps:
        in_step.set()
        go_on.wait(5)  # the stop is set during this step...
        while not stop.is_set():
            yield 3600.0  # ...so this wait must not be slept
        return "stopped"

    try:
        task = pool.submit(reader(), name="r", stop=stop)
        in_step.wait(5)
        stop.set()
        go_on.set()
        task.join(5)
        assert task.result == "stopped"
    finally:
        pool.close()


def test_each_task_keeps_its_own_context() -> None:
    """structlog binds the shard id in contextvars: a thread running many readers must not
    show one reader's shard id in another's logs."""
    shard: contextvars.ContextVar[str] = contextvars.ContextVar("shard", default="none")
    pool = StepPool(1, name="test-pool")
    seen: dict[str, list[str]] = {"a": [], "b": []}

    def reader(name: str) -> Steps:
        seen[name].append(shard.get())
        shard.set(name)
        for _ in range(5):
            yield 0.001
            seen[name].append(shard.get())
        return None

    try:
        tasks = [pool.submit(reader(n), name=n) for n in ("a", "b")]
        for task in tasks:
            task.join(5)
        assert seen == {"a": ["none"] + ["a"] * 5, "b": ["none"] + ["b"] * 5}
    finally:
        pool.close()


def test_a_task_that_raises_ends_with_its_error() -> None:
    pool = StepPool(1, name="test-pool")

    def broken() -> Steps:
        yield 0.0
        raise RuntimeError("boom")

    try:
        task = pool.submit(broken(), name="broken")
        task.join(5)
        assert not task.is_alive()
        assert isinstance(task.error, RuntimeError)
    finally:
        pool.close()


# -- retry_steps: tenacity's policy, its waits yielded ---------------------------------------


def _flaky(failures: int) -> tuple[list[int], object]:
    calls: list[int] = []

    def call() -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise ConnectionError("try again")
        return "ok"

    return calls, call


def _policy(attempts: int) -> Retrying:
    return Retrying(
        stop=stop_after_attempt(attempts),
        wait=wait_fixed(2.5),
        retry=retry_if_exception_type(ConnectionError),
        reraise=True,
    )


def test_retry_steps_yields_the_policys_waits_and_returns_the_result() -> None:
    calls, call = _flaky(2)
    steps: Generator[float, None, object] = retry_steps(
        _policy(5),
        lambda: just(call),  # type: ignore[arg-type]
    )
    waits = [next(steps), steps.send(None)]
    with pytest.raises(StopIteration) as done:
        steps.send(None)
    assert waits == [2.5, 2.5]
    assert done.value.value == "ok"
    assert len(calls) == 3


def test_retry_steps_reraises_when_the_policy_gives_up() -> None:
    calls, call = _flaky(10)
    stop = threading.Event()
    stop.set()  # drive() then waits nothing
    with pytest.raises(ConnectionError):
        drive(retry_steps(_policy(3), lambda: just(call)), stop)  # type: ignore[arg-type]
    assert len(calls) == 3


def test_closing_retry_steps_while_it_waits_does_not_count_as_an_attempt() -> None:
    """A generator closed mid-wait (a pool shutting down) must close, not retry."""

    def attempt() -> Steps:
        yield 1.0
        return "never"

    steps = retry_steps(_policy(5), attempt)
    assert next(steps) == 1.0
    steps.close()  # raises RuntimeError if GeneratorExit were swallowed as a failed attempt


def test_a_step_that_never_returns_does_not_keep_the_process_alive() -> None:
    """The worker gives readers a shutdown deadline, then exits: a consumer stuck in a step
    must not hold the interpreter at exit (reader threads were daemons before the pool)."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    script = """
import threading
from processor.runtime.pool import StepPool
pool = StepPool(2, name="stuck")
def stuck():
    threading.Event().wait()  # a consumer call that never returns
    yield 0.0
pool.submit(stuck(), name="stuck")
import time; time.sleep(0.2)
pool.close()
print("closed", flush=True)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=20, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "closed" in done.stdout


def test_readers_waiting_for_a_thread_are_counted() -> None:
    """`queued` (exported as dsp_readers_queued) counts readers due but waiting for a free
    thread: the saturation signal for stream.reader_threads."""
    pool = StepPool(1, name="test-pool")
    release = threading.Event()

    def blocking() -> Steps:
        release.wait(10)  # a consumer call holding the only thread
        yield 0.0
        return None

    try:
        first = pool.submit(blocking(), name="a")
        second = pool.submit(blocking(), name="b")
        _wait_until(lambda: pool.busy == 1 and pool.queued == 1)
        assert (pool.busy, pool.queued) == (1, 1)
        release.set()
        first.join(5)
        second.join(5)
        _wait_until(lambda: pool.queued == 0 and pool.busy == 0)
        assert (pool.busy, pool.queued) == (0, 0)
    finally:
        pool.close()
