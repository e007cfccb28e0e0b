"""Which shards exist and which leases they need, for one stream's worker: discovery
(leases read, then the stream listed, then the missing leases created), a cleanup pass on
the same views (ADR 0024), and a finished shard's children found at once."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import structlog

from processor.errors import ProcessorError
from processor.leases.cleanup import plan_cleanup, shards_to_create
from processor.leases.model import Lease, LeaseStore
from processor.runtime.shard_run import RunSummary, WorkerSettings
from processor.sources.base import StreamSource
from processor.sources.lineage import Shard

__all__ = ["Discovery"]

log = structlog.get_logger()


class Discovery:
    """The stream's shards as last listed, the leases' states at the last cleanup pass, and
    the shards this process will not take again."""

    def __init__(
        self,
        *,
        adapter: StreamSource,
        stream_arn: str,
        store: LeaseStore,
        settings: WorkerSettings,
        summary: RunSummary,
        clock: Callable[[], float],
    ) -> None:
        self._adapter = adapter
        self._stream_arn = stream_arn
        self._store = store
        self.settings = settings
        self.summary = summary
        self._clock = clock
        self.shards: dict[str, Shard] = {}
        #: shards this process will not take again (their data was trimmed)
        self.stopped: set[str] = set()
        #: the leases by state (owned, free, finished, trimmed_unread)
        self.lease_states: dict[str, int] = {}

    def discover(self, *, cleanup: bool = False) -> None:
        """List the shards and give the new ones leases; with ``cleanup``, a cleanup pass on
        the same views. The leases are read *before* the stream is listed: a lease read then
        belongs to a shard that was in the listing unless it left the stream (ADR 0024)."""
        leases = self._store.list_leases()
        description = self._adapter.describe(self._stream_arn)
        self.shards = {s.shard_id: s for s in description.shards}
        missing, from_start = shards_to_create(description.shards, leases)
        if missing:
            known = {lease.shard_id for lease in leases}
            self._store.create_missing(missing, known, from_start=from_start)
        log.debug("shards_discovered", shards=len(self.shards), new=len(missing))
        if cleanup:
            self._cleanup(leases, description.shards)

    def _cleanup(self, leases: list[Lease], listed: Sequence[Shard]) -> None:
        """One cleanup pass (ADR 0024): conditional deletes, bounded, repeatable; a failed one
        is tried again by a later pass and never stops the worker."""
        todo = plan_cleanup(
            leases,
            listed,
            on_trimmed=self.settings.reader.on_trimmed,
            now=self._clock(),
            timeout_s=self.settings.lease_timeout_s,
            limit=self.settings.cleanup_max_deletes,
        )
        self.lease_states = todo.states
        if todo.trimmed_unread:
            log.error(
                "leases_trimmed_unread",
                count=len(todo.trimmed_unread),
                shards=[lease.shard_id for lease in todo.trimmed_unread][:20],
                checkpoints=[lease.checkpoint for lease in todo.trimmed_unread][:20],
                policy=self.settings.reader.on_trimmed,
                fix=(
                    "these shards left the stream before they were read to the end: their "
                    'remaining records are lost. on_trimmed = "skip" deletes their leases so '
                    'their children are read; "fail" keeps them and blocks the children'
                ),
            )
        marked_all = all(
            self._store_call(self._store.mark_from_start, c) for c in todo.mark_from_start
        )
        deletions = [d for d in todo.delete if marked_all or d.reason != "left_stream"]
        deleted: dict[str, int] = {}
        failed = 0
        for deletion in deletions:
            outcome = self._store_call(self._store.delete, deletion.lease)
            if outcome is None:
                failed += 1
            elif outcome:
                deleted[deletion.reason] = deleted.get(deletion.reason, 0) + 1
                self.stopped.discard(deletion.lease.shard_id)
        for reason, count in deleted.items():
            self.summary.leases_deleted[reason] = self.summary.leases_deleted.get(reason, 0) + count
        if deleted or failed or todo.more:
            log.info(
                "leases_cleaned",
                deleted=sum(deleted.values()),
                by_reason=deleted,
                failed=failed,
                left_for_next_pass=todo.more,
                leases_before=len(leases),
            )
        # shards this process will not take again are forgotten once their lease is gone
        self.stopped &= {lease.shard_id for lease in leases}

    def _store_call(self, call: Callable[[Lease], bool], lease: Lease) -> bool | None:
        """A cleanup write; None when it failed (logged, retried by a later pass)."""
        try:
            return call(lease)
        except ProcessorError as exc:
            log.warning("lease_cleanup_failed", shard_id=lease.shard_id, error=str(exc))
            return None

    def children(self, shard_id: str) -> None:
        """A shard ended: find its children at once (ShardFilter) instead of a full describe.

        Needed only when the shard was open at the last full discovery: a describe that saw it
        closed listed its children too (they are created when the parent closes).
        """
        known_shard = self.shards.get(shard_id)
        if known_shard is None or known_shard.is_closed:
            return
        children = self._adapter.child_shards(self._stream_arn, shard_id)
        leases = self._store.list_leases()
        for child in children:
            self.shards[child.shard_id] = child
        missing, from_start = shards_to_create(children, leases)
        self._store.create_missing(
            missing, {lease.shard_id for lease in leases}, from_start=from_start
        )
        log.info("child_shards_found", parent=shard_id, children=[c.shard_id for c in children])
