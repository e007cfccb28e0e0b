"""One batch's writes, shared by the writer's slots (ADR 0018 addendum).

Each BatchWriteItem call takes up to 25 requests (and 16 MB) from the front of the queue.
What comes back unprocessed goes to the back, and rides in a later call of *any* slot,
together with whatever else is left. So:
- no slot sits out a backoff for a few leftovers while the queue still holds work: how fast
  calls go is the pacer's decision (``AimdRate``), made once for all slots;
- a hot partition's leftovers do not go first into every following call (where they would
  make each of them partial again): the writes not sent yet go first;
- calls are full until the batch has nothing left but leftovers.

A batch's writes name each key once (the consumer keeps the last change per key), so their
order within the batch does not matter; the batch ends when all are written (the
checkpoint follows), which keeps each key's order across batches.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Queued", "WriteQueue"]

T = TypeVar("T")


@dataclass(slots=True, eq=False)
class Queued(Generic[T]):
    """A write, how many calls have carried it, and how many of them wrote nothing."""

    write: T
    size: int
    attempts: int = 0
    #: of those calls, the ones that wrote nothing at all (refused whole)
    refusals: int = 0


class WriteQueue(Generic[T]):
    """Writes waiting for a call, taken by up to ``concurrency`` slots at once (thread-safe).

    :meth:`take` blocks while the queue is empty but calls are still in flight (their
    leftovers may come back), and returns ``None`` once everything is settled. A write whose
    ``max_attempts``-th call wrote nothing at all (the table refused it whole), or that
    comes back once ``stopped()`` (shutdown: every write is still sent once, nothing is
    resent), is *exhausted*: kept aside, not resent; the batch then fails and is retried
    whole, as before (puts and deletes are idempotent). Leftovers of a call that wrote
    something go back whatever their count: each such call writes at least one write, so
    the batch still ends, and a hot partition's writes, which ride many partial calls while
    it drains, are not given up while the table is taking them (ADR 0032).
    """

    def __init__(
        self,
        writes: Iterable[tuple[T, int]],
        *,
        max_requests: int,
        max_bytes: int,
        max_attempts: int,
        stopped: Callable[[], bool] = lambda: False,
    ) -> None:
        self._waiting: deque[Queued[T]] = deque(Queued(w, size) for w, size in writes)
        self._max_requests = max_requests
        self._max_bytes = max_bytes
        self._max_attempts = max_attempts
        self._stopped = stopped
        self._in_flight = 0  # writes in calls not settled yet
        self._changed = threading.Condition()
        #: writes that came back unprocessed after their last attempt (or once stopped)
        self.exhausted: list[Queued[T]] = []
        #: writes whose call failed with an error that is not retried here
        self.failed: list[Queued[T]] = []
        self.error: BaseException | None = None

    @property
    def left(self) -> int:
        """Writes not done: waiting, in flight, exhausted or failed."""
        with self._changed:
            waiting = len(self._waiting) + self._in_flight
            return waiting + len(self.exhausted) + len(self.failed)

    def take(self) -> list[Queued[T]] | None:
        """The next call's writes (each counted as one more attempt), or ``None``: done."""
        with self._changed:
            while True:
                if self.error is not None:
                    return None
                if self._ready():
                    break
                if not self._waiting and self._in_flight == 0:
                    return None
                self._changed.wait()
            call: list[Queued[T]] = []
            size = 0
            while self._waiting and len(call) < self._max_requests:
                head = self._waiting[0]
                if call and size + head.size > self._max_bytes:
                    break
                self._waiting.popleft()
                head.attempts += 1
                call.append(head)
                size += head.size
            self._in_flight += len(call)
            return call

    def _ready(self) -> bool:
        """Whether a call may be taken now: writes not sent yet go at once, and so does a full
        call's worth; leftovers alone wait while calls are in flight, so that theirs join
        them in one call rather than each going alone (issue 32: a batch's tail of a few
        leftovers per call doubled the requests)."""
        if not self._waiting:
            return False
        if self._in_flight == 0 or self._waiting[0].attempts == 0:
            return True
        if len(self._waiting) >= self._max_requests:
            return True
        return sum(q.size for q in self._waiting) >= self._max_bytes

    def refusal_sends_back(self, call: Sequence[Queued[T]]) -> bool:
        """Whether ``settle(call, call)`` (the call refused whole) would send any of its
        writes back, rather than exhaust them all: the writer waits only then."""
        if self._stopped():
            return False
        return min(q.refusals for q in call) + 1 < self._max_attempts

    def settle(self, call: Sequence[Queued[T]], unprocessed: Iterable[Queued[T]] = ()) -> int:
        """``call`` came back; ``unprocessed`` (of its writes) go to the back, in their
        order, unless they are exhausted. Returns how many went back."""
        returned = list(unprocessed)
        if returned and len(returned) == len(call):  # the call wrote nothing: a refusal
            for queued in returned:
                queued.refusals += 1
        limit = 0 if returned and self._stopped() else self._max_attempts
        with self._changed:
            back = [q for q in returned if q.refusals < limit]
            self.exhausted.extend(q for q in returned if q.refusals >= limit)
            self._waiting.extend(back)
            self._in_flight -= len(call)
            self._changed.notify_all()
            return len(back)

    def fail(self, call: Sequence[Queued[T]], error: BaseException) -> None:
        """``call`` failed with an error not retried here: no slot takes more work, and the
        first such error is the batch's."""
        with self._changed:
            self.failed.extend(call)
            if self.error is None:
                self.error = error
            self._in_flight -= len(call)
            self._changed.notify_all()
