"""Several streams in one process: a :class:`~processor.runtime.worker.Worker` per stream, one
main loop, one reader pool (ADR 0026).

Each stream keeps what is its own: its source, its leases (a namespace of the one lease
table), its routes and its figures. What the process has once is shared: the main thread,
the reader pool's thread bound, the health endpoints and the shutdown deadline.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import fields

from processor.runtime.main_loop import run_workers
from processor.runtime.pool import StepPool
from processor.runtime.shard_run import RunSummary
from processor.runtime.snapshot import WorkerSnapshot
from processor.runtime.worker import Worker

__all__ = ["Fleet", "SharedPool"]


class SharedPool:
    """One reader pool for every stream's worker, started with the first reader."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._pool: StepPool | None = None
        self._lock = threading.Lock()

    def __call__(self) -> StepPool:
        with self._lock:
            if self._pool is None:
                self._pool = StepPool(self.size)
            return self._pool

    @property
    def pool(self) -> StepPool | None:
        return self._pool

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()


class Fleet:
    """The process's workers, by stream name; looks like one worker to whoever runs it, checks
    its health or reads its figures (``state()`` is the sum; ``states()`` is per stream)."""

    def __init__(self, workers: Mapping[str, Worker], *, pool: SharedPool | None = None) -> None:
        if not workers:
            raise ValueError("a fleet needs at least one worker")
        self.workers = dict(workers)
        self._pool = pool

    def run(self, *, stop: threading.Event, stop_when_idle: float | None = None) -> RunSummary:
        try:
            run_workers(list(self.workers.values()), stop=stop, stop_when_idle=stop_when_idle)
        finally:
            if self._pool is not None:
                self._pool.close()
        return self.summary

    @property
    def summary(self) -> RunSummary:
        """Every stream's run summary, added up."""
        total = RunSummary()
        for worker in self.workers.values():
            part = worker.summary
            for spec in fields(RunSummary):
                mine, theirs = getattr(total, spec.name), getattr(part, spec.name)
                if isinstance(mine, int):
                    setattr(total, spec.name, mine + theirs)
                elif isinstance(mine, list):
                    mine.extend(theirs)
                else:
                    for key, count in theirs.items():
                        mine[key] = mine.get(key, 0) + count
        return total

    def states(self) -> dict[str, WorkerSnapshot]:
        """Each stream's snapshot (its reader-pool figures are the shared pool's)."""
        return {name: worker.state() for name, worker in self.workers.items()}

    def state(self) -> WorkerSnapshot:
        """The process's snapshot: counters added up, every stream's shards."""
        states = list(self.states().values())
        if len(states) == 1:
            return states[0]
        total = states[0].copy()
        total["shards"] = []
        total["stream_retries"], total["leases"], total["leases_deleted"] = {}, {}, {}
        for key in (
            "records_read",
            "leases_taken",
            "leases_lost",
            "leases_handed_off",
            "leases_stolen",
            "reader_failures",
            "shards_unowned",
            "trimmed_skips",
            "lease_scan_items",
        ):
            total[key] = sum(s[key] for s in states)
        for state in states:
            total["shards"] = total["shards"] + state["shards"]
            for key in ("stream_retries", "leases", "leases_deleted"):
                merged: dict[str, int] = total[key]  # type: ignore[literal-required]
                for name, count in state[key].items():  # type: ignore[literal-required]
                    merged[name] = merged.get(name, 0) + count
        return total

    def alive(self) -> bool:
        return all(worker.alive() for worker in self.workers.values())

    def ready(self, max_stall_s: float) -> tuple[bool, str]:
        """Ready when every stream is; the body names each stream's answer."""
        answers = {name: w.ready(max_stall_s) for name, w in self.workers.items()}
        if len(answers) == 1:
            return next(iter(answers.values()))
        ok = all(ready for ready, _ in answers.values())
        return ok, "; ".join(f"{name}: {why}" for name, (_, why) in answers.items())
