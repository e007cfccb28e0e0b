"""What a running worker reports: a typed snapshot for metrics, status, readiness and the
replay progress bar (dict access is kept: these are TypedDicts)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypedDict

import structlog

from processor.runtime.settings import WorkerSettings

__all__ = ["ShardSnapshot", "UnownedShards", "WorkerSnapshot", "readiness"]

log = structlog.get_logger()


class ShardSnapshot(TypedDict):
    shard_id: str
    #: now minus the creation time of the last record read; 0 when caught up
    lag_s: float
    #: seconds since the last successful GetRecords
    last_poll_age_s: float
    #: the last sequence number handled (checkpointed or about to be)
    checkpoint: str | None
    #: the creation time of the last record handled
    position_time: float | None
    last_error: str | None
    #: a GetRecords came back empty since the last record: the reader holds its iterator and
    #: is at the tip (LATEST now means "after this moment")
    caught_up: bool


class WorkerSnapshot(TypedDict):
    records_read: int
    leases_taken: int
    leases_lost: int
    leases_handed_off: int
    leases_stolen: int
    #: stream-call retries (after botocore's own) by cause
    stream_retries: dict[str, int]
    reader_failures: int
    #: ready shards no live worker owns (free or timed out), at the last lease scan
    shards_unowned: int
    trimmed_skips: int
    #: the reader pool: its bound, readers in a step now, readers due but waiting for a
    #: thread (above 0 for long: raise stream.reader_threads)
    reader_threads: int
    readers_busy: int
    readers_queued: int
    #: the lease table at the last scan, by state (owned, free, finished, trimmed_unread)
    leases: dict[str, int]
    #: items the last lease scan read (the whole application's leases: cleanup bounds it)
    lease_scan_items: int
    #: leases this process deleted, by reason (ADR 0024)
    leases_deleted: dict[str, int]
    shards: list[ShardSnapshot]


def readiness(state: WorkerSnapshot, *, scanned: bool, max_stall_s: float) -> tuple[bool, str]:
    """Leases held, and every owned shard polled successfully within ``max_stall_s``; a
    replica with nothing to take (more replicas than shards) is ready too."""
    if not state["shards"]:
        if scanned and state["shards_unowned"] == 0:
            return True, "ready: no lease to take (other replicas own every shard)"
        return False, "no leases held"
    stalled = [s for s in state["shards"] if s["last_poll_age_s"] > max_stall_s]
    if stalled:
        worst = max(stalled, key=lambda s: s["last_poll_age_s"])
        error = f"; last error: {worst['last_error']}" if worst["last_error"] else ""
        return False, (
            f"{len(stalled)} shard(s) not polled within {max_stall_s:g} s "
            f"(e.g. {worst['shard_id']}: {worst['last_poll_age_s']:.0f} s{error})"
        )
    return True, f"ready: {len(state['shards'])} shard(s)"


@dataclass(slots=True)
class UnownedShards:
    """Ready shards left without a live owner (ADR 0023). Past ``grace_s`` (a lease timeout
    plus a scan) they are unread changes that the retention will drop: a WARNING every scan,
    and a line in /readyz's body (the ``dsp_shards_unowned`` gauge shows them too). The
    worker's settings are read at each call (``settings()``)."""

    settings: Callable[[], WorkerSettings]
    count: int = 0
    since: float | None = None

    @property
    def grace_s(self) -> float:
        return self.settings().lease_timeout_s + self.settings().lease_scan_interval_s

    @property
    def max_leases(self) -> int | None:
        return self.settings().max_leases

    def report(self, unowned: int, now: float) -> None:
        """The count after a lease scan."""
        if unowned <= 0:
            self.since, self.count = None, 0
            return
        if self.since is None:
            self.since = now
        self.count = unowned
        waited = now - self.since
        if waited > self.grace_s:
            log.warning(
                "shards_unowned",
                count=unowned,
                for_s=round(waited, 1),
                max_leases=self.max_leases,
                fix="raise checkpoints.max_leases, or add replicas: unread changes are lost "
                "once they pass the stream's retention",
            )

    def note(self, now: float) -> str:
        """What /readyz adds once they are overdue (they do not make the process unready)."""
        if self.since is None or now - self.since <= self.grace_s:
            return ""
        return (
            f"; WARNING: {self.count} ready shard(s) unowned for {now - self.since:.0f} s "
            f"(checkpoints.max_leases = {self.max_leases}): raise it or add replicas"
        )
