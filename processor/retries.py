"""Every retry loop of the engine and of the built-in consumers, built here (ADR 0027).

:func:`retrying` is the one way to make a tenacity ``Retrying``: a stop event (a retry that
cannot be interrupted holds up shutdown), an attempt budget or none, a deadline or none, a
wait (full-jitter exponential backoff from a :class:`Backoff`, or a wait of the caller's such
as Retry-After), what is retried, an injectable sleep (tests never sleep for real).

The delays that are not settings are named here, once:

* :data:`QUICK` (0.1 s doubling to 5 s): a local service or an AWS call that answered with a
  transient error: Redis, SQS, a reconnect;
* :data:`STORE_MAX_S` (from ``batch.retry_base_delay_s`` up to 30 s): storing dead letters,
  which goes on until stored or stopped, because nothing may be lost;
* :data:`STREAM_CALL_BASE_S` (0.5 s, up to five times ``stream.poll_interval_max_s``): a
  stream call that failed after botocore's own retries.

A retry inside another retry multiplies their attempts; the two places that do it say why in
ADR 0027 (the SQS sink resends only a batch's failed messages, inside the dead-letter
writer's loop; a webhook's attempts run inside the wait for a half-open breaker's probe).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    stop_never,
    stop_when_event_set,
    wait_random_exponential,
)
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from processor.errors import TransientError

__all__ = ["QUICK", "STORE_MAX_S", "STREAM_CALL_BASE_S", "Backoff", "Wait", "retrying"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Full-jitter exponential backoff: a wait drawn up to ``base_s * 2**n``, at most
    ``max_s``."""

    base_s: float
    max_s: float

    def wait(self) -> wait_base:
        return wait_random_exponential(multiplier=self.base_s, max=self.max_s)


#: a local service, or an AWS call that answered with a transient error
QUICK = Backoff(base_s=0.1, max_s=5.0)
#: the longest wait between two tries to store dead letters (their base is a setting)
STORE_MAX_S = 30.0
#: a stream call that failed after botocore's own retries starts again this soon (its
#: cap: five times ``stream.poll_interval_max_s``)
STREAM_CALL_BASE_S = 0.5


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TransientError)


#: a tenacity wait: a ``wait_base``, or any callable of the retry state giving seconds
Wait = wait_base | Callable[[RetryCallState], float]


def retrying(
    *,
    wait: Backoff | Wait,
    stop: threading.Event | None = None,
    attempts: int | None = None,
    deadline_s: float | None = None,
    until: stop_base | None = None,
    retry_on: Callable[[BaseException], bool] = _is_transient,
    sleep: Callable[[float], None] | None = None,
    before_sleep: Callable[[RetryCallState], None] | None = None,
    reraise: bool = True,
) -> Retrying:
    """A ``Retrying`` that tries until the call succeeds, ``retry_on`` says no, ``attempts``
    are spent (None: no budget), ``deadline_s`` passed (None: none), ``until`` says so (a
    stop condition of the caller's: a route's charged retries, a record's age) or ``stop``
    is set."""
    stops: list[stop_base] = []
    if attempts is not None:
        stops.append(stop_after_attempt(attempts))
    if deadline_s is not None:
        stops.append(stop_after_delay(deadline_s))
    if until is not None:
        stops.append(until)
    if stop is not None:
        stops.append(stop_when_event_set(stop))
    combined: stop_base = stop_never
    for part in stops:
        combined = part if combined is stop_never else combined | part
    options: dict[str, Any] = {
        "stop": combined,
        "wait": wait.wait() if isinstance(wait, Backoff) else wait,
        "retry": retry_if_exception(retry_on),
        "reraise": reraise,
    }
    if sleep is not None:
        options["sleep"] = sleep
    if before_sleep is not None:
        options["before_sleep"] = before_sleep
    return Retrying(**options)
