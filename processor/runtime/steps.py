"""Waiting that a stop request interrupts, and waits handed to whoever runs a step generator.

A long-running loop (a shard reader) is written as a *step generator*: instead of sleeping it
yields the seconds it wants to wait, and whoever drives it decides how: :func:`drive` waits
on a stop event in the calling thread; :class:`processor.runtime.pool.StepPool` runs
thousands of them on a few threads. Retry policies stay tenacity's (:func:`retry_steps`).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Generator
from typing import TypeVar

import structlog
from tenacity import (
    DoAttempt,
    DoSleep,
    RetryCallState,
    Retrying,
)

from processor.errors import ShutdownRequested, TransientError
from processor.retries import STREAM_CALL_BASE_S, Backoff, retrying

__all__ = ["Steps", "bound", "drive", "just", "retry_steps", "transient_steps"]

T = TypeVar("T")

#: a loop that yields the seconds it wants to wait and returns its result
Steps = Generator[float, None, T]


def drive(steps: Steps[T], stop: threading.Event) -> T:
    """Run ``steps`` in this thread: each wait is a wait on ``stop`` (cut short once set)."""
    try:
        wait = next(steps)
        while True:
            if wait > 0:
                stop.wait(wait)
            wait = steps.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def just(call: Callable[[], T]) -> Steps[T]:
    """``call()`` as steps that never wait."""
    return call()
    yield  # pragma: no cover (makes this a generator)


def retry_steps(retrying: Retrying, attempt: Callable[[], Steps[T]]) -> Steps[T]:
    """Run ``attempt`` under ``retrying``'s policy (its stop, wait, retry, before_sleep and
    reraise), yielding the policy's waits instead of sleeping them.

    This drives tenacity's own decision step (``Retrying.iter``), as tenacity's
    AsyncRetrying does, because the steps may resume on another thread: tenacity keeps its
    statistics per thread, so they are begun afresh before each decision (we read none)."""
    policy = retrying.copy()
    state = RetryCallState(policy, fn=None, args=(), kwargs={})
    while True:
        policy.begin()
        action = policy.iter(retry_state=state)
        if isinstance(action, DoAttempt):
            try:
                value = yield from attempt()
            except GeneratorExit:  # closed while waiting: not an outcome of the attempt
                raise
            except BaseException:  # noqa: BLE001 - what tenacity's AttemptManager records
                state.set_exception(sys.exc_info())  # type: ignore[arg-type]
            else:
                state.set_result(value)
        elif isinstance(action, DoSleep):
            state.prepare_for_next_attempt()
            yield float(action)
        else:
            return action  # type: ignore[no-any-return]


def bound(steps: Steps[T], **context: str) -> Steps[T]:
    """``steps`` with ``context`` in every log line they write (a pooled task runs in a
    contextvars context of its own, so the binding stays the task's)."""
    structlog.contextvars.bind_contextvars(**context)
    return (yield from steps)


def transient_steps(
    call: Callable[[], T],
    stop: threading.Event,
    max_wait_s: float,
    before_sleep: Callable[[RetryCallState], None],
) -> Steps[T]:
    """``call`` retried on TransientError with full-jitter exponential waits (from 0.5 s up to
    ``max_wait_s``), yielded as steps, until it succeeds or ``stop`` is set (then
    ShutdownRequested)."""
    policy = retrying(
        wait=Backoff(STREAM_CALL_BASE_S, max_wait_s), stop=stop, before_sleep=before_sleep
    )
    try:
        return (yield from retry_steps(policy, lambda: just(call)))
    except TransientError as exc:
        if stop.is_set():
            raise ShutdownRequested("stop requested while retrying a stream call") from exc
        raise
