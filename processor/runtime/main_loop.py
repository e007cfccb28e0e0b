"""The main loop of one or several streams' workers, on one thread: tick each in turn, stop
when asked or when every stream has been idle long enough, then shut down together (every
stream's readers stopped at once, drained against one deadline with every stream's leases
renewed meanwhile). It knows a worker by the steps it takes (:class:`Ticking`)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

import structlog

from processor.runtime.shard_run import Running, WorkerSettings

__all__ = ["Ticking", "run_workers", "shut_down"]

log = structlog.get_logger()


class Ticking(Protocol):
    """A stream's worker, as the main loop drives it."""

    settings: WorkerSettings

    def now(self) -> float: ...
    def begin(self) -> None: ...
    def tick(self, now: float) -> None: ...
    def idle(self, now: float) -> float | None: ...
    def stop_readers(self) -> None: ...
    def draining(self) -> list[Running]: ...
    def renew_due(self, now: float) -> float: ...
    def finish(self) -> None: ...


def run_workers(
    workers: Sequence[Ticking],
    *,
    stop: threading.Event,
    stop_when_idle: float | None = None,
) -> None:
    """The main loop of one or several streams' workers (one thread): tick each in turn until
    ``stop`` is set or, with ``stop_when_idle``, every stream has been idle that long; then
    drain, checkpoint and release (:func:`shut_down`)."""
    monotonic = workers[0].now
    for worker in workers:
        worker.begin()
    tick_s = min(w.settings.tick_s for w in workers)
    try:
        while not stop.is_set():
            now = monotonic()
            for worker in workers:
                worker.tick(now)
            if stop_when_idle is not None:
                idles = [w.idle(now) for w in workers]
                idle = (
                    None
                    if any(i is None for i in idles)
                    else min(i for i in idles if i is not None)
                )
                if idle is not None and idle >= stop_when_idle:
                    log.info("worker_idle", idle_s=round(idle, 2))
                    break
            stop.wait(tick_s)
    finally:
        shut_down(workers)


def shut_down(workers: Sequence[Ticking]) -> None:
    """Drain, checkpoint, then release: readers finish their batch and checkpoint while their
    leases keep being renewed (a slow drain must not let another replica take a shard
    mid-batch); leases are released once their reader stopped. Every stream's readers stop
    at once and share the deadline."""
    monotonic = workers[0].now
    for worker in workers:
        worker.stop_readers()
    deadline = monotonic() + max(w.settings.shutdown_deadline_s for w in workers)
    while True:
        now = monotonic()
        alive = [r for w in workers for r in w.draining()]
        if not alive or now >= deadline:
            break
        next_renewal = min(w.renew_due(now) for w in workers)
        task = alive[0].task
        assert task is not None
        task.join(max(0.0, min(deadline, next_renewal) - now))
    for worker in workers:
        worker.finish()
