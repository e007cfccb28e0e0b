"""One owned shard's reader, as the worker runs it: restarted with backoff after a failure,
its lease renewed (a handoff request or a lost lease stops it), and its figures in the
worker's snapshot."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import structlog
from tenacity import (
    RetryCallState,
)

from processor.errors import LeaseLostError, ProcessorError
from processor.leases.model import Lease, LeaseStore
from processor.retries import Backoff, retrying
from processor.runtime.pool import StepPool, Task
from processor.runtime.reader import ShardReader
from processor.runtime.settings import WorkerSettings
from processor.runtime.snapshot import WorkerSnapshot
from processor.runtime.steps import Steps, retry_steps
from processor.runtime.targets import ReaderOutcome

__all__ = [
    "RunSummary",
    "Running",
    "WorkerSettings",
    "release",
    "renew_all",
    "renew_one",
    "restart_steps",
    "snapshot",
]

log = structlog.get_logger()


@dataclass(slots=True)
class RunSummary:
    records_read: int = 0
    shards_finished: int = 0
    leases_taken: int = 0
    leases_lost: int = 0
    reader_failures: int = 0
    leases_stolen: int = 0
    leases_handed_off: int = 0
    trimmed_skips: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    stream_retries: dict[str, int] = field(default_factory=dict)
    #: leases this process deleted, by reason (children_started, left_stream, trimmed_unread)
    leases_deleted: dict[str, int] = field(default_factory=dict)

    def absorb(self, running: Running) -> ReaderOutcome:
        """Add an ended reader's figures; its outcome (FAILED if it had none)."""
        reader = running.reader
        outcome = running.outcome or ReaderOutcome.FAILED
        self.records_read += reader.records_read
        self.reader_failures += reader.failures_total
        self.trimmed_skips.extend((reader.shard_id, a, b) for a, b in reader.trimmed_skips)
        for cause, count in reader.stream_retries.items():
            self.stream_retries[cause] = self.stream_retries.get(cause, 0) + count
        return outcome


class _ReaderFailed(Exception):
    """A reader run ended with an unexpected error: restarted after a backoff."""


@dataclass(slots=True)
class Running:
    reader: ShardReader
    task: Task | None = None  # the reader's run in the pool (set once submitted)
    outcome: ReaderOutcome | None = None
    handoff: bool = False

    def is_alive(self) -> bool:
        return self.task is not None and self.task.is_alive()


def restart_steps(
    running: Running,
    settings: WorkerSettings,
    on_restart_wait: Callable[[float], None] | None = None,
) -> Steps[None]:
    """Run the reader; after an unexpected failure, run it again (it resumes after its
    checkpoint) with capped exponential backoff and full jitter, keeping the lease, until
    it reads, stops or loses the lease. A fatal failure (trimmed data under
    ``on_trimmed = "fail"``) is not retried. The backoff is yielded, like the reader's own
    waits; ``on_restart_wait`` sees each one."""
    reader = running.reader

    def attempt() -> Steps[ReaderOutcome]:
        outcome = yield from reader.steps()
        if outcome is ReaderOutcome.FAILED and reader.failure is None:
            raise _ReaderFailed(reader.last_error or "reader failed")
        return outcome

    def before_sleep(state: RetryCallState) -> None:
        if on_restart_wait is not None:
            on_restart_wait(state.upcoming_sleep)
        log.warning(
            "shard_reader_restarting",
            shard_id=reader.shard_id,
            failures=reader.failures,
            wait_s=round(state.upcoming_sleep, 3),
            error=reader.last_error,
        )

    restarts = retrying(
        wait=Backoff(settings.reader_restart_base_s, settings.reader_restart_max_s),
        stop=reader.stop,
        retry_on=lambda exc: isinstance(exc, _ReaderFailed),
        before_sleep=before_sleep,
    )
    try:
        running.outcome = yield from retry_steps(restarts, attempt)
    except _ReaderFailed:
        running.outcome = ReaderOutcome.FAILED


def renew_one(store: LeaseStore, running: Running, owner: str) -> None:
    """Renew one reader's lease; a handoff request or a lost lease stops its reader."""
    try:
        reader = running.reader
        failure = (reader.last_error, reader.failures) if reader.last_error else None
        lease = store.renew(reader.lease, lag_s=reader.lag_s, failure=failure)
        running.reader.lease = lease
        handoff = lease.handoff_to and lease.handoff_to != owner
        if handoff and not running.handoff:
            log.info("lease_handing_off", shard_id=lease.shard_id, to_owner=lease.handoff_to)
            running.handoff = True
            running.reader.stop.set()  # finish the batch, checkpoint, then release
    except LeaseLostError:
        log.warning("lease_lost", shard_id=running.reader.shard_id)
        running.reader.lease_lost = True
        running.reader.stop.set()
    except ProcessorError as exc:
        log.warning("lease_renew_failed", shard_id=running.reader.shard_id, error=str(exc))


def renew_all(store: LeaseStore, running: list[Running], owner: str, executor: Executor) -> None:
    """Renew every owned lease, in parallel: one slow call must not delay the others."""
    if len(running) <= 1:
        for item in running:
            renew_one(store, item, owner)
        return
    list(executor.map(lambda item: renew_one(store, item, owner), running))


def release(store: LeaseStore, lease: Lease, *, handoff: bool = False) -> None:
    """Give a lease up (``handoff``: to the replica that asked); a failure is logged, and
    the lease times out instead."""
    try:
        store.release(lease, handoff=handoff)
    except ProcessorError as exc:
        log.warning("lease_release_failed", shard_id=lease.shard_id, error=str(exc))


def snapshot(
    summary: RunSummary,
    running: list[Running],
    *,
    takeable: int,
    now: float,
    reader_threads: int = 0,
    pool: StepPool | None = None,
    leases: dict[str, int] | None = None,
    lease_scan_items: int = 0,
) -> WorkerSnapshot:
    """Counters (ended readers' in ``summary`` plus the running ones'), and per owned shard
    its lag and last poll."""
    return {
        "records_read": summary.records_read + sum(r.reader.records_read for r in running),
        "leases_taken": summary.leases_taken,
        "leases_lost": summary.leases_lost,
        "leases_handed_off": summary.leases_handed_off,
        "leases_stolen": summary.leases_stolen,
        "stream_retries": _stream_retries(summary, running),
        "reader_failures": summary.reader_failures + sum(r.reader.failures_total for r in running),
        # ready shards no live worker owns (free or timed out), at the last lease scan
        "shards_unowned": takeable,
        "trimmed_skips": len(summary.trimmed_skips)
        + sum(len(r.reader.trimmed_skips) for r in running),
        "reader_threads": reader_threads,
        "readers_busy": pool.busy if pool is not None else 0,
        "readers_queued": pool.queued if pool is not None else 0,
        "leases": dict(leases or {}),
        "lease_scan_items": lease_scan_items,
        "leases_deleted": dict(summary.leases_deleted),
        "shards": [
            {
                "shard_id": r.reader.shard_id,
                "lag_s": r.reader.lag_s,
                "last_poll_age_s": now - r.reader.last_poll_at,
                "checkpoint": r.reader.last_handled,
                "position_time": r.reader.handled_time,
                "last_error": r.reader.last_error,
                "caught_up": r.reader.caught_up,
            }
            for r in running
        ],
    }


def _stream_retries(summary: RunSummary, running: list[Running]) -> dict[str, int]:
    totals = dict(summary.stream_retries)
    for item in running:
        for cause, count in item.reader.stream_retries.items():
            totals[cause] = totals.get(cause, 0) + count
    return totals
