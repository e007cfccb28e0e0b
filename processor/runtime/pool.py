"""Many shard readers on a few threads.

A reader is a step generator (:meth:`ShardReader.steps`): it runs until it wants to wait
(between polls, in a retry's backoff, for a read budget) and yields the seconds. The pool
keeps every waiting reader in a heap ordered by when it is due; one scheduler thread hands
due readers, oldest due first, to at most ``size`` threads, each running one step. Threads
are started only as readers are due at once, so a process owning 1,000 mostly idle shards
runs a handful; a busy shard is due again at once and takes its turn behind the others that
are due (fair polling, catch-up without starving anyone).

A reader's step runs in the reader's own :mod:`contextvars` context, so what it binds in
structlog's context (shard id, sequence number) stays its own, as in a thread of its own.
Setting the reader's stop event (a :class:`WakingEvent`) makes it due at once.
"""

from __future__ import annotations

import contextvars
import heapq
import itertools
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

from processor.runtime.steps import Steps

__all__ = ["StepPool", "Task", "WakingEvent"]

log = structlog.get_logger()


class WakingEvent(threading.Event):
    """An event that also calls its listeners when set (a pooled reader's stop: the pool
    runs the reader at once instead of at the end of its wait)."""

    def __init__(self) -> None:
        super().__init__()
        self._listeners: list[Callable[[], None]] = []

    def listen(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)
        if self.is_set():
            listener()

    def set(self) -> None:
        super().set()
        for listener in list(self._listeners):
            listener()


class Task:
    """One step generator in the pool; looks like a thread to whoever waits for it."""

    def __init__(self, pool: StepPool, steps: Steps[Any], name: str) -> None:
        self.name = name
        self._pool = pool
        self._steps = steps
        self._context = contextvars.Context()
        self._started = False
        self._done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        # scheduling state, guarded by the pool's lock
        self.version = 0  # heap entries of older versions are stale
        self.running = False
        self.woken = False

    def is_alive(self) -> bool:
        return not self._done.is_set()

    def join(self, timeout: float | None = None) -> None:
        self._done.wait(timeout)

    def wake(self) -> None:
        """Run the task at once (its stop was set): now if waiting, right after its step if
        running."""
        self._pool._wake(self)

    def _step(self) -> float | None:
        """Run one step in the task's context: the wait it asks for, or None when done."""
        try:
            if not self._started:
                self._started = True
                return self._context.run(next, self._steps)
            return self._context.run(self._steps.send, None)
        except StopIteration as finished:
            self.result = finished.value
        except BaseException as exc:  # kept for whoever joins, and logged
            self.error = exc
            log.exception("pooled_task_failed", task=self.name)
        self._done.set()
        return None


class StepPool:
    def __init__(
        self,
        size: int,
        *,
        name: str = "dsp-reader",
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.size = size
        self._name = name
        self._monotonic = monotonic
        # Worker threads are daemons, as reader threads always were: the worker gives readers
        # a shutdown deadline and then exits, even past a consumer stuck in a step (a
        # ThreadPoolExecutor would hold the interpreter at exit until that step returned).
        self._ready: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = threading.Semaphore(0)  # released by each worker waiting for a task
        self._lock = threading.Condition()
        self._heap: list[tuple[float, int, int, Task]] = []
        self._order = itertools.count()  # ties: first come, first served
        self._closed = False
        self._scheduler = threading.Thread(target=self._schedule, name=f"{name}-due", daemon=True)
        self._scheduler.start()
        #: steps run, running now and the most run at once; readers due and handed over but
        #: waiting for a free thread (the pool is saturated while this stays above 0)
        self.steps_run = 0
        self.busy = 0
        self.most_busy = 0
        self.queued = 0

    def submit(self, steps: Steps[Any], *, name: str, stop: WakingEvent | None = None) -> Task:
        """Run ``steps`` from now; ``stop``, when set, wakes it."""
        task = Task(self, steps, name)
        with self._lock:
            self._push(task, self._monotonic())
        if stop is not None:
            stop.listen(task.wake)
        return task

    def close(self) -> None:
        """Stop scheduling; steps running now finish (tasks not done are abandoned)."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._scheduler.join(5)
        for _ in self._threads:
            self._ready.put(None)  # each idle worker ends; a stuck one is a daemon

    # -- scheduling (under the lock) ----------------------------------------------------------

    def _push(self, task: Task, due: float) -> None:
        task.version += 1
        entry = (due, next(self._order), task.version, task)
        heapq.heappush(self._heap, entry)
        if self._heap[0] is entry:  # earlier than what the scheduler waits for
            self._lock.notify_all()

    def _wake(self, task: Task) -> None:
        with self._lock:
            if task.running:
                task.woken = True
            elif task.is_alive() and not self._closed:
                self._push(task, self._monotonic())

    def _schedule(self) -> None:
        with self._lock:
            while not self._closed:
                now = self._monotonic()
                while self._heap and self._heap[0][2] != self._heap[0][3].version:
                    heapq.heappop(self._heap)  # stale: the task was woken and re-pushed
                if not self._heap:
                    self._lock.wait()
                    continue
                due, _, _, task = self._heap[0]
                if due > now:
                    self._lock.wait(due - now)
                    continue
                heapq.heappop(self._heap)
                task.running = True
                task.woken = False
                self._hand(task)

    def _hand(self, task: Task) -> None:
        """Give ``task`` to an idle worker, or start one while fewer than ``size`` run."""
        if not self._idle.acquire(timeout=0) and len(self._threads) < self.size:
            thread = threading.Thread(
                target=self._work, name=f"{self._name}_{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
        self.queued += 1
        self._ready.put(task)

    def _work(self) -> None:
        while True:
            task = self._ready.get()
            if task is None:
                return
            self._run(task)
            self._idle.release()

    def _run(self, task: Task) -> None:
        with self._lock:
            self.queued -= 1
            self.busy += 1
            self.most_busy = max(self.most_busy, self.busy)
        wait = task._step()
        with self._lock:
            self.busy -= 1
            self.steps_run += 1
            task.running = False
            if wait is None or self._closed:
                return
            due = self._monotonic() + (0.0 if task.woken else max(wait, 0.0))
            task.woken = False
            self._push(task, due)
